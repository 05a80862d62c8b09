terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Local state (gitignored). The network root; the fleet root one directory up reads it by tags and names.
}
