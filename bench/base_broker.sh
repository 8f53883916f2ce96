# bench/base_broker.sh: sourced by the benchmarks that run a base commit's broker beside this
# tree's (bench/cpu.sh, bench/webhooks.sh). Needs ROOT, DATA, say and die.

# base_broker COMMIT: prints the path of COMMIT's bin/firehose-broker, built once into
# DATA/base-SHA/ (git archive of the commit, then make there); later runs reuse it.
base_broker() {
    local sha dir
    sha="$(git -C "$ROOT" rev-parse --short=7 "$1^{commit}")" || die "$1 is not a commit here"
    dir="$DATA/base-$sha"
    if [ ! -x "$dir/bin/firehose-broker" ]; then
        say "building the base broker ($sha) in $dir"
        rm -rf "$dir" && mkdir -p "$dir"
        git -C "$ROOT" archive "$sha" | tar -x -C "$dir"
        make -C "$dir" --no-print-directory -s -j2 bin/firehose-broker >&2
    fi
    echo "$dir/bin/firehose-broker"
}
