# The Airflow image of a phoenix-fleet deployment (docker-compose.yml, or the official Helm chart's
# `images.airflow`). See README "Deploy to an AWS account".
#
#   docker build -t phoenix-fleet-airflow:3.3.2 .                      # the build machine's architecture
#   docker buildx build --platform linux/arm64 -t ... .                 # another one (see the lock note below)
#
# * Packer and Terraform: HashiCorp's release zips for the build's architecture (TARGETARCH), checked against
#   the release's SHA256SUMS, whose signature is checked against HashiCorp's release key (by fingerprint).
# * The Packer amazon plugin at the version include/packer/phoenix.pkr.hcl pins, installed into
#   PACKER_PLUGIN_PATH: `packer init` at bake time finds it and downloads nothing.
# * A filesystem mirror of the hashicorp/aws provider the Terraform lock file pins (checked against the lock's
#   hashes), and PHOENIX_TF_PLUGIN_MIRROR pointing at it: workers neither search the disk nor reach a registry.
#   The committed lock holds the linux_amd64 hash only; for another architecture run
#   `terraform providers lock -platform=linux_amd64 -platform=linux_arm64` in each root first.
# * phoenix-fleet and its dependencies, exactly as uv.lock pins them (the `distributed` group: Celery,
#   Postgres, FAB), installed into the image's own Python environment ($VIRTUAL_ENV, /home/airflow/.local).
#   The package registers its Airflow plugin through an entry point: compose mounts dags/ and include/ only.
# tests/unit/test_compose.py checks the versions here against uv.lock, the Packer template and the Terraform roots.

ARG AIRFLOW_IMAGE=apache/airflow:slim-3.3.2-python3.11

# ------------------------------------------------------------------------------------- HashiCorp tools
FROM debian:bookworm-slim AS hashicorp
ARG TARGETARCH
ARG PACKER_VERSION=1.11.2
ARG TERRAFORM_VERSION=1.11.4
# HashiCorp's release signing key (https://www.hashicorp.com/trust/security)
ARG HASHICORP_KEY_FINGERPRINT=C874011F0AB405110D02105534365D9472D7468F
SHELL ["/bin/bash", "-o", "pipefail", "-euc"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg unzip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /downloads
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && export GNUPGHOME="$(mktemp -d)" \
 && curl -fsSL https://www.hashicorp.com/.well-known/pgp-key.txt | gpg --batch --import \
 && gpg --batch --with-colons --fingerprint | grep -q "^fpr:::::::::${HASHICORP_KEY_FINGERPRINT}:" \
 && for tool in "packer ${PACKER_VERSION}" "terraform ${TERRAFORM_VERSION}"; do \
      set -- ${tool}; name=$1; version=$2; base="https://releases.hashicorp.com/${name}/${version}"; \
      zip="${name}_${version}_linux_${arch}.zip"; \
      curl -fsSLO "${base}/${zip}"; \
      curl -fsSLO "${base}/${name}_${version}_SHA256SUMS"; \
      curl -fsSLO "${base}/${name}_${version}_SHA256SUMS.sig"; \
      gpg --batch --verify "${name}_${version}_SHA256SUMS.sig" "${name}_${version}_SHA256SUMS"; \
      grep " ${zip}\$" "${name}_${version}_SHA256SUMS" | sha256sum --check --strict -; \
      unzip -o "${zip}" "${name}" -d /usr/local/bin; \
    done \
 && packer version && terraform version

# The Packer amazon plugin at the template's pinned version (packer verifies the plugin's own checksums)
COPY include/packer/phoenix.pkr.hcl /build/packer/phoenix.pkr.hcl
ENV PACKER_PLUGIN_PATH=/opt/packer/plugins
RUN packer init /build/packer/phoenix.pkr.hcl && packer plugins installed

# A provider mirror of what the fleet root's lock file pins, for this architecture (checked against the lock),
# unpacked (registry.terraform.io/hashicorp/aws/<version>/linux_<arch>/), so that `terraform init` links the
# provider instead of extracting its zip in every working dir
COPY include/terraform/envs/sandbox/versions.tf include/terraform/envs/sandbox/.terraform.lock.hcl /build/terraform/
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && cd /build/terraform \
 && terraform providers mirror -platform="linux_${arch}" /tmp/packed \
 && for zip in /tmp/packed/registry.terraform.io/*/*/terraform-provider-*_linux_"${arch}".zip; do \
      dir=$(dirname "${zip}"); provider=$(basename "${dir}"); namespace=$(basename "$(dirname "${dir}")"); \
      version=$(basename "${zip}" | sed -E "s/^terraform-provider-${provider}_(.*)_linux_${arch}\.zip\$/\1/"); \
      target="/opt/terraform/plugin-mirror/registry.terraform.io/${namespace}/${provider}/${version}/linux_${arch}"; \
      mkdir -p "${target}" && unzip -q "${zip}" -d "${target}"; \
    done \
 && rm -rf /tmp/packed \
 && ls -R /opt/terraform/plugin-mirror | head -20

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# --------------------------------------------------------------------------------------------- the image
FROM ${AIRFLOW_IMAGE}
USER root
COPY --from=hashicorp /usr/local/bin/packer /usr/local/bin/terraform /usr/local/bin/
COPY --from=hashicorp --chown=airflow:0 /opt/packer /opt/packer
COPY --from=hashicorp --chown=airflow:0 /opt/terraform /opt/terraform
COPY --from=uv /uv /usr/local/bin/uv
USER airflow
ENV PACKER_PLUGIN_PATH=/opt/packer/plugins \
    PHOENIX_TF_PLUGIN_MIRROR=/opt/terraform/plugin-mirror \
    CHECKPOINT_DISABLE=1 \
    PHOENIX_FLEET_CONFIG=/opt/airflow/include/fleet.yaml

# The dependencies exactly as uv.lock pins them (hashes checked), then the project itself, without its deps,
# all into the image's own environment ($VIRTUAL_ENV)
COPY --chown=airflow:0 pyproject.toml uv.lock README.md /opt/phoenix/
COPY --chown=airflow:0 plugins/phoenix_fleet /opt/phoenix/plugins/phoenix_fleet
RUN cd /opt/phoenix \
 && uv export --locked --no-default-groups --group distributed --no-emit-project --format requirements-txt \
      > /tmp/requirements.txt \
 && uv pip install --python "${VIRTUAL_ENV}/bin/python" --no-cache --compile-bytecode -r /tmp/requirements.txt \
 && uv pip install --python "${VIRTUAL_ENV}/bin/python" --no-cache --compile-bytecode --no-deps /opt/phoenix \
 && rm /tmp/requirements.txt \
 && python -c "from importlib.metadata import entry_points; import airflow; \
assert [e.value for e in entry_points(group='airflow.plugins') if e.name == 'phoenix_fleet'], 'no plugin entry point'; \
print('phoenix-fleet on Airflow', airflow.__version__)"
