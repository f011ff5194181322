"""MLflow as the scientist's window: what a pipeline run puts into its MLflow run
(`run_log`), and the registry of record mirrored into MLflow's model registry
(`registry_mirror`). Both are best-effort views: the registry stays the record, and a broken
MLflow store logs a warning instead of failing a registration, a deployment or a rollback."""
