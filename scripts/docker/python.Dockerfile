# A stand-in for python:3.11-slim-bookworm (scripts/docker-base.sh builds it): as there, a CPython built from
# source with --enable-shared lives in /usr/local, here the host's own build (the version the locks are made for;
# Debian's python3 is 3.11.2, where some locked packages want what the locks leave out, e.g. redis wants
# async-timeout below 3.11.3). python.tar holds its bin/python3.11*, include/, lib/ and share/ without
# site-packages, tests and Tk; PREFIX is where it was built, rewritten to /usr/local in its build-time data.
ARG BASE=web-bot-local/debian:bookworm
FROM ${BASE}
ARG PREFIX
# The libraries the standard library's extension modules load, as the official image has them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libbz2-1.0 libexpat1 libffi8 liblzma5 libncursesw6 libreadline8 \
       libsqlite3-0 libssl3 libuuid1 tzdata zlib1g netbase \
    && rm -rf /var/lib/apt/lists/*
ADD python.tar /usr/local/
# hadolint ignore=SC2046
RUN sed -i "s|${PREFIX}|/usr/local|g" $(grep -rlF "${PREFIX}" /usr/local/lib/python3.11/_sysconfigdata_*.py \
       /usr/local/lib/python3.11/config-3.11-x86_64-linux-gnu /usr/local/lib/pkgconfig /usr/local/bin/python3.11-config) \
    && for name in python3 python; do ln -s python3.11 /usr/local/bin/$name; done \
    && for name in python3-config python-config; do ln -s python3.11-config /usr/local/bin/$name; done \
    && ldconfig \
    && python3 -m ensurepip --default-pip >/dev/null \
    && find /usr/local/lib/python3.11 -name __pycache__ -prune -exec rm -rf {} + \
    && python3 -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, readline, venv; print('python', __import__('sys').version)"
# pip trusts the system's certificates, as Debian's own pip and this host's pip do (PIP_CERT): they hold the host's
# extra CAs (scripts/docker-base.sh), where pip's bundled list would refuse a TLS-inspecting proxy.
ENV LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
