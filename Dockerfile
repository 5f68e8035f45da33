# captcha-exporter: tor, Chromium, Tor Browser and geckodriver in one image.
#
#   docker build -t captcha-exporter .
#   docker run --rm -p 127.0.0.1:10981:10981 \
#     -v "$PWD/docker/config.yaml:/etc/captcha-exporter/config.yaml:ro" captcha-exporter
#
# Tor Browser and geckodriver are downloaded at build time and their OpenPGP
# signatures checked against pinned primary-key fingerprints; a mismatch fails
# the build.

ARG DEBIAN_IMAGE=debian:12.11-slim
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------- downloads
FROM ${DEBIAN_IMAGE} AS downloads

ARG TOR_BROWSER_VERSION=14.5.5
# "Tor Browser Developers (signing key) <torbrowser@torproject.org>"; subkeys
# rotate, so the primary key is pinned (support.torproject.org/tbb/how-to-verify-signature/).
ARG TOR_BROWSER_KEY_FINGERPRINT=EF6E286DDA85EA2A4BA7DE684E2C6E8793298290
ARG TOR_BROWSER_KEY_URL=https://openpgpkey.torproject.org/.well-known/openpgpkey/torproject.org/hu/kounek7zrdx745qydx6p59t9mqjpuhdf
ARG TOR_BROWSER_BASE_URL=https://archive.torproject.org/tor-package-archive/torbrowser
ARG GECKODRIVER_VERSION=0.35.0
# Mozilla's release signing key for geckodriver.
ARG GECKODRIVER_KEY_FINGERPRINT=14F26682D0916CDD81E37B6D61B7B526D98F0353
ARG GECKODRIVER_KEY_URL=https://keys.openpgp.org/vks/v1/by-fingerprint/14F26682D0916CDD81E37B6D61B7B526D98F0353

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg gpgv xz-utils \
 && rm -rf /var/lib/apt/lists/*

# verify KEY_URL FINGERPRINT FILE: check FILE.asc with the key whose primary
# fingerprint is FINGERPRINT (an exported keyring is empty for any other key).
RUN printf '%s\n' '#!/bin/sh' 'set -eu' \
      'home=$(mktemp -d); curl -fsSL "$1" -o "$home/key"' \
      'gpg --homedir "$home" --batch --quiet --import "$home/key"' \
      'gpg --homedir "$home" --batch --export "$2" > "$home/pinned.gpg"' \
      'test -s "$home/pinned.gpg" || { echo "key $2 not found at $1" >&2; exit 1; }' \
      'gpgv --keyring "$home/pinned.gpg" "$3.asc" "$3"' \
      'rm -rf "$home"' > /usr/local/bin/verify \
 && chmod 0755 /usr/local/bin/verify

WORKDIR /downloads
RUN set -eux; \
    archive="tor-browser-linux-x86_64-${TOR_BROWSER_VERSION}.tar.xz"; \
    curl -fsSLO "${TOR_BROWSER_BASE_URL}/${TOR_BROWSER_VERSION}/${archive}"; \
    curl -fsSLO "${TOR_BROWSER_BASE_URL}/${TOR_BROWSER_VERSION}/${archive}.asc"; \
    verify "${TOR_BROWSER_KEY_URL}" "${TOR_BROWSER_KEY_FINGERPRINT}" "${archive}"; \
    tar -xJf "${archive}" -C /opt; \
    test -x /opt/tor-browser/Browser/firefox

RUN set -eux; \
    archive="geckodriver-v${GECKODRIVER_VERSION}-linux64.tar.gz"; \
    base="https://github.com/mozilla/geckodriver/releases/download/v${GECKODRIVER_VERSION}"; \
    curl -fsSLO "${base}/${archive}"; \
    curl -fsSLO "${base}/${archive}.asc"; \
    verify "${GECKODRIVER_KEY_URL}" "${GECKODRIVER_KEY_FINGERPRINT}" "${archive}"; \
    tar -xzf "${archive}" -C /usr/local/bin geckodriver

# ------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE}

# tor and Chromium from Debian; the rest are Tor Browser's runtime libraries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      tor tor-geoipdb chromium chromium-driver fonts-dejavu-core \
      libgtk-3-0 libdbus-glib-1-2 libasound2 libxrender1 libfontconfig1 \
      libcairo-gobject2 libstartup-notification0 libx11-xcb1 \
 && rm -rf /var/lib/apt/lists/*

COPY --from=downloads /opt/tor-browser /opt/tor-browser
COPY --from=downloads /usr/local/bin/geckodriver /usr/local/bin/geckodriver

# captcha_exporter_build_info{revision}: docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD)
ARG REVISION=unknown
ENV CAPTCHA_EXPORTER_REVISION=$REVISION

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir . && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/captcha-exporter --create-home captcha \
 && chown -R captcha:captcha /opt/tor-browser
COPY docker/config.yaml /etc/captcha-exporter/config.yaml

USER captcha:captcha
WORKDIR /var/lib/captcha-exporter
VOLUME ["/var/lib/captcha-exporter"]
EXPOSE 10981

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10981/-/healthy', timeout=4)"]

ENTRYPOINT ["captcha-exporter"]
CMD ["run", "--config", "/etc/captcha-exporter/config.yaml", "--log.format", "json"]
