"""One synthetic probe run against a SageMaker endpoint: every variant, warm fallbacks
included, invoked with TargetVariant and rows built from the serving champion's drift baseline;
per-variant ProbeSuccess and ProbeLatency go to the metric sink. The probe Lambda calls
`probe_endpoint` once per scheduled run (the maths: `mlops_kit.monitoring.probe`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from mlops_kit.aws.monitoring import champion_baseline_uris
from mlops_kit.contract import ProbeSettings
from mlops_kit.core.rotation import serving_champion
from mlops_kit.monitoring.probe import Invoke, baseline_rows, probe_metrics, probe_variants


def endpoint_invoker(runtime: Any, endpoint_name: str) -> Invoke:
    """InvokeEndpoint pinned to one variant, as (HTTP status, body); a refusal is its status."""
    from botocore.exceptions import ClientError

    def invoke(variant: str, body: str) -> tuple[int, str]:
        try:
            response = runtime.invoke_endpoint(
                EndpointName=endpoint_name, TargetVariant=variant, ContentType="text/csv",
                Accept="text/csv", Body=body.encode())
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            return int(meta.get("HTTPStatusCode", 500)), str(exc)
        return 200, response["Body"].read().decode()
    return invoke


def probe_endpoint(deps: Mapping[str, Any], settings: ProbeSettings) -> dict[str, Any]:
    """Probe every variant of the settings' endpoint; `deps` are `homes.aws.monitoring`'s
    (endpoints, registry, documents, sink, runtime). An endpoint serving nothing is skipped."""
    endpoint = settings.endpoint_name
    view = deps["endpoints"].describe(endpoint)
    champion = serving_champion(view.variants) if view is not None else None
    if champion is None:
        return {"status": "skipped", "reason": f"endpoint {endpoint} serves nothing"}
    registry = deps["registry"]
    baseline_uri, _ = champion_baseline_uris(registry.sagemaker,
                                             registry.model_package_arn(champion.version))
    baseline = deps["documents"].json(baseline_uri)
    schema = baseline["schema"]
    body = baseline_rows(baseline["features"], schema["numeric"] + schema["categorical"])
    results = probe_variants(endpoint_invoker(deps["runtime"], endpoint),
                             [v.variant_name for v in view.variants], body,
                             float(settings.max_latency_ms))
    # Stamped when the variants answered, not when the run was scheduled.
    deps["sink"].put(probe_metrics(results, endpoint, datetime.now(timezone.utc)))
    return {"status": "probed", "variants": {r.variant_name: r.to_dict() for r in results}}
