# A stand-in for nginx:1.27-bookworm made from Debian's nginx (1.22; scripts/docker-base.sh builds it): the
# http-level files in /etc/nginx/conf.d/ are served, logs go to the container's output.
ARG BASE=web-bot-local/debian:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80 443
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
