#!/usr/bin/env bash
# ---------------------------------------------------------------------------
# Real Ollama server for tests (internal/realollama).
#
# Idempotent: installs g++ and the two Debian header packages the Go module zip lacks
# (its llama/llama.cpp/vendor/ directory is not in the zip), writes a stub for
# miniaudio/miniaudio.h (audio input is not needed), and builds
# github.com/ollama/ollama at $HOPPER_OLLAMA_VERSION with CGO (CPU only) into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/hopper/ollama-$HOPPER_OLLAMA_VERSION/ollama
# unless that binary is already there. Prints the binary's path on stdout (all
# other output goes to stderr). Exits non-zero if anything fails.
#
# Usage: bin=$(bash .ci/ollama.sh) && HOPPER_OLLAMA_BIN=$bin HOPPER_REAL_OLLAMA=1 go test ./internal/realollama/...
# A cold build takes about 5 minutes on 2 cores.
# ---------------------------------------------------------------------------
set -euo pipefail

version=${HOPPER_OLLAMA_VERSION:-0.17.4}
cache=${XDG_CACHE_HOME:-$HOME/.cache}
dir="$cache/hopper/ollama-$version"
bin="$dir/ollama"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

missing=()
for pkg in g++ nlohmann-json3-dev libstb-dev; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$dir/include/miniaudio"
cat >"$dir/include/miniaudio/miniaudio.h" <<'STUB'
/* Stub for miniaudio.h: hopper's test builds of Ollama need no audio input.
 * Every decoder call fails, so audio input is rejected as undecodable. */
#ifndef HOPPER_MINIAUDIO_STUB_H
#define HOPPER_MINIAUDIO_STUB_H
#include <stddef.h>
typedef unsigned long long ma_uint64;
typedef unsigned int ma_uint32;
typedef int ma_result;
#define MA_SUCCESS 0
#define MA_ERROR (-1)
typedef enum { ma_format_unknown = 0, ma_format_f32 = 5 } ma_format;
typedef struct { ma_format format; ma_uint32 channels; ma_uint32 sampleRate; } ma_decoder_config;
typedef struct { int unused; } ma_decoder;
static inline ma_decoder_config ma_decoder_config_init(ma_format f, ma_uint32 c, ma_uint32 r) {
	ma_decoder_config cfg; cfg.format = f; cfg.channels = c; cfg.sampleRate = r; return cfg;
}
static inline ma_result ma_decoder_init_memory(const void *d, size_t n, const ma_decoder_config *c, ma_decoder *dec) {
	(void)d; (void)n; (void)c; (void)dec; return MA_ERROR;
}
static inline ma_result ma_decoder_get_length_in_pcm_frames(ma_decoder *dec, ma_uint64 *n) {
	(void)dec; *n = 0; return MA_ERROR;
}
static inline ma_result ma_decoder_read_pcm_frames(ma_decoder *dec, void *out, ma_uint64 n, ma_uint64 *read) {
	(void)dec; (void)out; (void)n; *read = 0; return MA_ERROR;
}
static inline ma_result ma_decoder_uninit(ma_decoder *dec) { (void)dec; return MA_SUCCESS; }
#endif
STUB

stage=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$stage"' EXIT
echo "building ollama $version into $bin (about 5 minutes on 2 cores)" >&2
# Build outside any module so the caller's go.mod plays no part.
(
	cd "$stage"
	GOBIN="$stage" GOFLAGS=-buildvcs=false CGO_ENABLED=1 \
		CGO_CPPFLAGS="-I$dir/include ${CGO_CPPFLAGS:-}" \
		go install -ldflags "-X github.com/ollama/ollama/version.Version=$version" \
		"github.com/ollama/ollama@v$version"
) >&2
# 127.0.0.1:9 (discard) has no server here, so this only prints the client version.
OLLAMA_HOST=127.0.0.1:9 "$stage/ollama" --version >&2 || true
mv -f "$stage/ollama" "$bin"
echo "$bin"
