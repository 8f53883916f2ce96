#!/usr/bin/env bash
# Writes docs/configuration.md from the programs' own config tables (--help-markdown).
# Usage: tools/gen-config-doc.sh [BINDIR]   (prints to stdout)
set -euo pipefail
bindir=${1:-bin}
cat <<'HEAD'
# Configuration

Generated from the programs' own tables (`--help-markdown`) by `make docs`; a test keeps this page
equal to them.

Precedence, lowest first: defaults, `--config FILE` (or `FIREHOSE_CONFIG`; lines `key = value`,
`#` comments), environment (`FIREHOSE_` + the key upper-cased, dots as underscores), flags
(`--key=value`, `--key value`, or the short alias; a bare boolean flag means true). Keys under
`kafka.` that are not listed pass straight to librdkafka (`--kafka.linger.ms=5`, `-X linger.ms=5`,
or `kafka.linger.ms = 5` in the file); they are not read from the environment.
HEAD
for p in firehose-broker firehose-emit firehose-sim firehose-replay firehose-tail; do
    printf '\n## %s\n\n' "$p"
    "$bindir/$p" --help-markdown
done
