"""Pure decisions shared by both homes (local and AWS): gates, drift maths, and later variant
rotation and rollback policy. Imports numpy at most: no boto3, no pandas, no CDK."""
