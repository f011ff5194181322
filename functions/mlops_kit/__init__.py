"""MLOps kit: the pure decision core, registry and local runtime behind the `mlops` CLI.

Kept import-free on purpose: the step bundle that ships to SageMaker containers carries
`mlops_kit/core`, and Lambda cold starts import from here.
"""

__version__ = "0.1.0"
