"""AWS adapters shared by the Lambda handlers and the CLI: boto3 client factory, bounded retries,
the DynamoDB ledger (audit trail and deployment history) and the batch transform launcher.

Nothing here imports the SageMaker SDK: boto3 only, so cold starts stay short.
"""
