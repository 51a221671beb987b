# The one image all three services run from (`switchyard orchestrator`, `config-service`,
# `agent-runner`, `migrate`), as the Helm chart expects.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p switchyard-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/switchyard"]
