# phoenix-fleet AMI: one template for every role (web, worker, ...).
#
#   packer init  include/packer/phoenix.pkr.hcl
#   packer build -machine-readable -color=false \
#     -var role=web -var version=2025.06.02-1 -var build_run=<airflow run id> -var git_sha=<sha> \
#     -var 'base_ami_owners=["self"]' include/packer/phoenix.pkr.hcl
#
# The image test suite (tests/, testinfra) is uploaded, installed as /usr/local/bin/phoenix-image-test
# and run twice during the build: a failed check fails the build. See docs/packer.md.
#
# Everything lives in this one file on purpose: `packer build <file>` reads only this file, and the
# Packer double of the sandbox reads it with python-hcl2.

packer {
  required_version = ">= 1.10.0, < 2.0.0"
  required_plugins {
    amazon = {
      version = "= 1.3.10"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

# ---------------------------------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------------------------------

variable "role" {
  type        = string
  description = "Fleet role the image is baked for (a key of roles: in include/fleet.yaml, e.g. web or worker). Selects the role setup in provisioners/20-role.sh."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,31}$", var.role))
    error_message = "The role must be lower-case letters, digits and dashes, starting with a letter (at most 32 characters)."
  }
}

variable "version" {
  type        = string
  description = "Release version of the image, e.g. 2025.06.02-1. Part of the AMI name phoenix-<role>-<version>, which must be unique per account and region."
  validation {
    condition     = can(regex("^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$", var.version))
    error_message = "The version must be letters, digits, dots, dashes or underscores, starting with a letter or digit (at most 64 characters)."
  }
}

variable "base_ami_name" {
  type        = string
  description = "Name filter of the base AMI (wildcards allowed); the most recent match owned by base_ami_owners is used."
  default     = "phoenix-base-debian-12-*"
}

variable "base_ami_owners" {
  type        = list(string)
  description = "Account ids (or self) trusted to own the base AMI. Never empty: resolving an AMI by name without an owner filter invites name squatting."
  default     = ["self"]
  validation {
    condition     = length(var.base_ami_owners) > 0
    error_message = "The base_ami_owners list must name at least one trusted owner (an account id or self)."
  }
}

variable "regions" {
  type        = list(string)
  description = "Regions of the AMI. The first is the build region; any others are copied by Packer (ami_regions). phoenix-fleet's publish step copies AMIs itself, so the DAGs pass a single region."
  default     = ["us-east-1"]
  validation {
    condition     = length(var.regions) > 0
    error_message = "The regions list must name at least the build region."
  }
}

variable "instance_type" {
  type        = string
  description = "Instance type of the temporary builder instance (x86_64)."
  default     = "t3.small"
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the builder instance. Empty: the default VPC of the build region."
  default     = ""
}

variable "iam_instance_profile" {
  type        = string
  description = "Instance profile of the builder instance (optional; e.g. for SSM or reading artifacts). Empty: none."
  default     = ""
}

variable "ssh_username" {
  type        = string
  description = "Login user of the base AMI that Packer connects as (Debian cloud images: admin). Its authorized_keys is removed by provisioners/90-cleanup.sh."
  default     = "admin"
}

variable "build_run" {
  type        = string
  description = "Airflow run id of the bake (tag phoenix:build-run and the manifest's custom_data)."
  default     = "manual"
}

variable "git_sha" {
  type        = string
  description = "Git commit of phoenix-fleet the image is built from (tag phoenix:git-sha)."
  default     = "unknown"
}

variable "build_inputs" {
  type        = string
  description = "Digest of the other build variables (phoenix-fleet computes it; tag phoenix:build-inputs): a retry reuses only an image built from the same inputs."
  default     = ""
}

variable "root_device_name" {
  type        = string
  description = "Device name of the base AMI's root volume (Debian cloud images: /dev/xvda)."
  default     = "/dev/xvda"
}

variable "root_volume_size" {
  type        = number
  description = "Size of the encrypted gp3 root volume in GiB."
  default     = 8
}

variable "kms_key_id" {
  type        = string
  description = "KMS key (id or ARN) that encrypts the root volume and the AMI's snapshot. Empty: the account's default EBS key (aws/ebs)."
  default     = ""
}

# ---------------------------------------------------------------------------------------------------
# Source: the builder instance
# ---------------------------------------------------------------------------------------------------

source "amazon-ebs" "phoenix" {
  region      = var.regions[0]
  ami_regions = slice(var.regions, 1, length(var.regions))

  ami_name        = "phoenix-${var.role}-${var.version}"
  ami_description = "phoenix-fleet ${var.role} image ${var.version}"
  # Instances launched from the AMI default to IMDSv2 (tokens required).
  imds_support = "v2.0"

  source_ami_filter {
    filters = {
      name                = var.base_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
      state               = "available"
    }
    owners      = var.base_ami_owners
    most_recent = true
  }

  instance_type        = var.instance_type
  subnet_id            = var.subnet_id
  iam_instance_profile = var.iam_instance_profile

  ssh_username            = var.ssh_username
  temporary_key_pair_type = "ed25519"

  # IMDSv2 on the builder instance too.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = var.root_device_name
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }

  run_tags = {
    Name                 = "phoenix-build-${var.role}-${var.version}"
    "phoenix:role"       = var.role
    "phoenix:version"    = var.version
    "phoenix:build-run"  = var.build_run
    "phoenix:managed-by" = "phoenix-fleet"
  }

  # {{ .SourceAMI }} and {{ .SourceAMIName }} are the amazon builder's build variables for tags.
  tags = {
    Name                      = "phoenix-${var.role}-${var.version}"
    "phoenix:role"            = var.role
    "phoenix:version"         = var.version
    "phoenix:source-ami"      = "{{ .SourceAMI }}"
    "phoenix:source-ami-name" = "{{ .SourceAMIName }}"
    "phoenix:build-run"       = var.build_run
    "phoenix:git-sha"         = var.git_sha
    "phoenix:build-inputs"    = var.build_inputs
    "phoenix:verified"        = "false"
    "phoenix:managed-by"      = "phoenix-fleet"
  }

  snapshot_tags = {
    Name                      = "phoenix-${var.role}-${var.version}"
    "phoenix:role"            = var.role
    "phoenix:version"         = var.version
    "phoenix:source-ami"      = "{{ .SourceAMI }}"
    "phoenix:source-ami-name" = "{{ .SourceAMIName }}"
    "phoenix:build-run"       = var.build_run
    "phoenix:git-sha"         = var.git_sha
    "phoenix:build-inputs"    = var.build_inputs
    "phoenix:verified"        = "false"
    "phoenix:managed-by"      = "phoenix-fleet"
  }
}

# ---------------------------------------------------------------------------------------------------
# Build: provisioners, then the hand-off files
# ---------------------------------------------------------------------------------------------------

build {
  name    = "phoenix"
  sources = ["source.amazon-ebs.phoenix"]

  # The image test suite; provisioners/50-install-tests.sh installs it from /tmp/tests.
  provisioner "file" {
    source      = "${path.root}/tests"
    destination = "/tmp"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "DEBIAN_FRONTEND=noninteractive",
      "PHOENIX_ROLE=${var.role}",
      "PHOENIX_VERSION=${var.version}",
      "PHOENIX_BUILD_RUN=${var.build_run}",
      "PHOENIX_GIT_SHA=${var.git_sha}",
      "PHOENIX_SOURCE_AMI=${build.SourceAMI}",
      "PHOENIX_BUILD_USER=${var.ssh_username}",
      "PHOENIX_TESTS_SRC=/tmp/tests",
    ]
    scripts = [
      "${path.root}/provisioners/10-security-updates.sh",
      "${path.root}/provisioners/20-role.sh",
      "${path.root}/provisioners/30-harden-ssh.sh",
      "${path.root}/provisioners/40-unattended-upgrades.sh",
      "${path.root}/provisioners/50-install-tests.sh",
      "${path.root}/provisioners/60-run-tests.sh",
    ]
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "DEBIAN_FRONTEND=noninteractive",
      "PHOENIX_ROLE=${var.role}",
      "PHOENIX_VERSION=${var.version}",
      "PHOENIX_BUILD_USER=${var.ssh_username}",
      "PHOENIX_TESTS_SRC=/tmp/tests",
    ]
    scripts = [
      "${path.root}/provisioners/90-cleanup.sh",
      "${path.root}/provisioners/95-package-list.sh",
      "${path.root}/provisioners/98-final-tests.sh",
    ]
  }

  # name<TAB>version of every installed package, next to the manifest (release notes).
  provisioner "file" {
    direction   = "download"
    source      = "/var/lib/phoenix/packages.tsv"
    destination = "packages-${var.role}-${var.version}.tsv"
  }

  post-processor "manifest" {
    output     = "manifest-${var.role}-${var.version}.json"
    strip_path = true
    custom_data = {
      role          = var.role
      version       = var.version
      build_run     = var.build_run
      git_sha       = var.git_sha
      source_ami    = "${build.SourceAMI}"
      packages_file = "packages-${var.role}-${var.version}.tsv"
    }
  }
}
