# A stand-in for redis:7-bookworm made from Debian's redis-server (7.0; scripts/docker-base.sh builds it): runs as
# the redis user in /data, and like the official image turns protected mode off when started without a config file.
ARG BASE=web-bot-local/debian:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379
ENTRYPOINT ["redis-entrypoint.sh"]
CMD ["redis-server"]
