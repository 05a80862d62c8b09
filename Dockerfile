# The Airflow image for a team's deployment (docker-compose.yml, or a Helm chart's `images.airflow`).
# Dependencies come from uv.lock, exactly as in development and CI; packer and terraform are the real CLIs.
FROM apache/airflow:3.3.2-python3.11

USER root
ARG PACKER_VERSION=1.11.2
ARG TERRAFORM_VERSION=1.11.4
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl unzip ca-certificates \
 && curl -fsSLo /tmp/packer.zip "https://releases.hashicorp.com/packer/${PACKER_VERSION}/packer_${PACKER_VERSION}_linux_amd64.zip" \
 && curl -fsSLo /tmp/terraform.zip "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_amd64.zip" \
 && unzip -o /tmp/packer.zip -d /usr/local/bin && unzip -o /tmp/terraform.zip -d /usr/local/bin \
 && rm -f /tmp/*.zip && apt-get purge -y unzip && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root pyproject.toml uv.lock README.md /opt/phoenix/
COPY --chown=airflow:root plugins/phoenix_fleet /opt/phoenix/plugins/phoenix_fleet
RUN pip install --no-cache-dir uv==0.13.9 \
 && cd /opt/phoenix \
 && uv export --locked --no-dev --no-emit-project --format requirements-txt > /tmp/requirements.txt \
 && uv pip install --system --no-cache -r /tmp/requirements.txt \
 && uv pip install --system --no-cache --no-deps /opt/phoenix
