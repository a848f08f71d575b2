# kapal's own image: the `kapal` CLI, the web service and the worker (docker-compose.dev.yml).
# Built by `docker build .` or by kapal itself (`kapal build -t kapal:dev .`). The worker runs
# jobs in runc containers of its own, so it needs runc, e2fsprogs (workspace disks), util-linux
# and iproute2 (network namespaces), slirp4netns and nftables (jobs' default network and its
# firewall), and runs privileged (see docker-compose.dev.yml).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends git runc e2fsprogs util-linux iproute2 \
       slirp4netns nftables \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kapal
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY runner ./runner
COPY web ./web
COPY migrations ./migrations
RUN pip install --no-cache-dir .

ENV KAPAL_DATA_DIR=/var/lib/kapal
VOLUME /var/lib/kapal
EXPOSE 8080
ENTRYPOINT ["kapal"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
