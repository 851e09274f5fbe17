# A stand-in for postgres:16-bookworm made from Debian's postgresql-15 (scripts/docker-base.sh builds it): the same
# POSTGRES_USER / POSTGRES_DB / POSTGRES_PASSWORD on first start, data in /var/lib/postgresql/data, pg_isready.
ARG BASE=web-bot-local/debian:bookworm
FROM ${BASE}
# Debian's package would make and start a cluster of its own; the entrypoint makes the one in PGDATA instead.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/docker.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH="/usr/lib/postgresql/15/bin:$PATH" \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint.sh"]
CMD ["postgres"]
