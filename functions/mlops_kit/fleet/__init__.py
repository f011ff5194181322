"""The fleet as data: one declaration per model (`models/<name>.toml`), validated, read by the
CDK app (a pipeline, model package group, endpoint, alarms and dashboard per model) and by the
local home alike."""
