# firehose: build the programs on Debian 12 and ship them on a slim runtime image.
FROM debian:12-slim AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config librdkafka-dev libjansson-dev libssl-dev \
        libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY lib lib
COPY producers producers
COPY broker broker
COPY tools tools
COPY schemas schemas
COPY web web
RUN make -j"$(nproc)" all && make install PREFIX=/usr/local DESTDIR=/out

FROM debian:12-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librdkafka1 libjansson4 libssl3 libmicrohttpd12 libcurl4 libsqlite3-0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/firehose --create-home firehose
COPY --from=build /out/usr/local /usr/local
USER firehose
WORKDIR /var/lib/firehose
# REST, stream, SSE and the dashboard on one port; the view lives in /var/lib/firehose/var.
ENV FIREHOSE_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/firehose-broker"]
