# sessiongate in an image with nothing but the binary: build it with `make docker`.
# There is no build stage and no base image to pull. `make docker` first runs
# `make build` (CGO_ENABLED=0: a static binary, needing no libc), and this file only
# copies bin/sessiongate and the example configuration onto an empty image.
#
#   make docker
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v $PWD/sessiongate.yaml:/etc/sessiongate/sessiongate.yaml:ro sessiongate
#
# The flags in CMD listen on every interface of the container (the example file
# listens on loopback, which is unreachable from outside it); publish the admin port
# on the host's loopback only, as reads on it need no token. SIGTERM (docker stop)
# shuts down gracefully: give it more than shutdown_timeout (docker stop -t 45).
FROM scratch
COPY bin/sessiongate /sessiongate
COPY examples/fbdev.yaml /etc/sessiongate/sessiongate.yaml
# Unprivileged (nobody); both ports are above 1024.
USER 65534:65534
EXPOSE 8080 9090
ENTRYPOINT ["/sessiongate"]
CMD ["-config", "/etc/sessiongate/sessiongate.yaml", "-listen", ":8080", "-admin", ":9090"]
