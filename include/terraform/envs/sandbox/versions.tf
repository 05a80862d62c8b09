terraform {
  required_version = ">= 1.11" # the S3 backend's use_lockfile

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State in S3, locked with Terraform's S3 lock file (a conditional write of <key>.tflock; no DynamoDB table).
  # Partial configuration: bucket, key and region come from `terraform init -backend-config=...`
  # (roles.<role>.terraform.backend_config in include/fleet.yaml; see docs/terraform.md). The endpoint and
  # credentials come from the environment (AWS_ENDPOINT_URL points at the sandbox). The skip_* and path-style
  # settings are for the sandbox's S3 only, like providers.tf.
  backend "s3" {
    use_lockfile                = true
    encrypt                     = true
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
  }
}
