terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Local state (gitignored). The fleet root: apply ./network first (see docs/terraform.md).
}
