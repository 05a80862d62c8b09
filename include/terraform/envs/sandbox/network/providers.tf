# The AWS provider talks to the local sandbox (moto with realism extensions), never to AWS.
provider "aws" {
  region = var.region
  # credentials from the environment (AWS_ACCESS_KEY_ID, ...): TerraformApplyOperator exports its connection's, so
  # Terraform runs as the Terraform principal (include/iam/terraform.json); the sandbox's root key is `testing`

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    autoscaling = var.endpoint
    ec2         = var.endpoint
    elb         = var.endpoint
    elbv2       = var.endpoint
    iam         = var.endpoint
    s3          = var.endpoint
    ssm         = var.endpoint
    sts         = var.endpoint
  }

  default_tags {
    tags = {
      "phoenix:env"        = var.env
      "phoenix:managed-by" = "terraform"
    }
  }
}
