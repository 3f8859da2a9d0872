"""Names of the environment variables the points ledger reads, defined once.

Import the constant rather than spelling the name: a typo is then an ``ImportError`` instead of
a setting that silently keeps its default. Applications built on the ledger (``sample_api``,
``worker``) define their own names next to their code; these are the ledger's.
"""

#: Which backend stores the ledger: ``sqlite`` (default) or ``dynamodb``.
POINTS_STORE = "POINTS_STORE"
#: The SQLite file (default ``./points.db``); shared by every process on the host.
POINTS_DB_PATH = "POINTS_DB_PATH"
#: The DynamoDB table (required when ``POINTS_STORE=dynamodb``).
POINTS_TABLE = "POINTS_TABLE"
#: Points per JPY, a decimal in [0, 1] (default 0.01: one point per 100 JPY).
POINTS_RATE = "POINTS_RATE"
#: The ledger record formats this version reads, comma-separated (default ``1``); see
#: :mod:`points.formats`.
POINTS_FORMATS_READ = "POINTS_FORMATS_READ"
#: The ledger record format this version writes (default ``1``); must be one it reads.
POINTS_FORMAT_WRITE = "POINTS_FORMAT_WRITE"

# The AWS SDK's own names (botocore reads them too), read here for the region and endpoint of the
# DynamoDB backend and of the worker's SQS client.

#: The AWS region; wins over ``AWS_DEFAULT_REGION``.
AWS_REGION = "AWS_REGION"
#: The AWS region when ``AWS_REGION`` is unset (the older CLI name).
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
#: An endpoint for every AWS service (a local one such as moto's server); unset means AWS.
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
#: Explicit credentials; unset means boto3's default chain (on ECS: the task role).
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"
