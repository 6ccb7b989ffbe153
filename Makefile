# vast-operator. `make demo` shows it working; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
BIN := target/debug/vast-operator

.PHONY: chaos-build help demo test lint unit integration cluster cluster-down tools crds build clean bench bench-smoke chaos fuzz leak-check mutants image image-test

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

demo: ## Local control plane + fake Vast + operator; shows a workergroup scaling up, then cleans up.
	hack/demo.sh

test: lint tools ## fmt check, clippy, hadolint, unit and integration tests (real control plane), at trace level and searched for API keys.
	hack/leak-check.sh

lint: ## cargo fmt --check, clippy -D warnings, hadolint on the Dockerfile.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	hack/hadolint.sh Dockerfile

unit: ## Unit tests only (no control plane).
	$(CARGO) test --workspace --lib --bins

BENCH_ARGS ?= --sizes 100,1000,5000

bench: tools ## Benchmark at N = 100, 1000, 5000 WorkerGroups beside the baseline script, then cold start and restart (about 40 min; not in make test).
	$(CARGO) build --release -p vast-operator -p vast-operator-bench
	target/release/vast-operator-bench $(BENCH_ARGS) --out target/bench/results.jsonl | tee target/bench/results.txt
	hack/bench/plot.sh target/bench/results.jsonl docs/performance.png docs/performance-results-2026-11-29.jsonl

leak-check: tools ## The tests alone (no lint): at RUST_LOG=trace, failing if a test API key shows in any log line, event, status or object.
	hack/leak-check.sh

CHAOS_SEED ?= 1
CHAOS_MINUTES ?= 10

chaos: tools chaos-build ## Two replicas under a seeded fault schedule (CHAOS_SEED, CHAOS_MINUTES=10; CHAOS_PLANT=stale plants a bug), judged by an oracle; target/chaos/report.json; not in make test.
	target/debug/vast-operator-chaos --seed $(CHAOS_SEED) --minutes $(CHAOS_MINUTES) --operator target/chaos/vast-operator-failpoints

chaos-build: ## Build the chaos harness and the operator with failpoints (target/chaos/vast-operator-failpoints).
	@# The replicas are a test build with failpoints (crash points, a held watch, a
	@# forced relist, the planted bug), kept aside; target/debug/vast-operator stays the
	@# plain build. The failpoints' own unit tests run here, with the feature.
	$(CARGO) build -p vast-operator --features failpoints --bin vast-operator
	$(CARGO) test -p vast-operator --features failpoints --lib failpoint
	mkdir -p target/chaos && cp target/debug/vast-operator target/chaos/vast-operator-failpoints
	$(CARGO) build -p vast-operator -p vast-operator-chaos

FUZZ_SECONDS ?= 180

fuzz: ## Coverage-guided fuzzing of the Vast response parser with AFL++ (cargo-afl, stable Rust) for FUZZ_SECONDS (180); fails on any crash.
	command -v cargo-afl >/dev/null || $(CARGO) install cargo-afl --locked
	@# Builds AFL++ and its runtime on first use (minutes); refuses, saying so, when they
	@# are already built: only that refusal is not an error.
	@out=$$($(CARGO) afl config --build 2>&1) || { echo "$$out" | grep -q 'already built' || { echo "$$out" >&2; exit 1; }; }
	cd fuzz && $(CARGO) afl build --release
	rm -rf target/fuzz/out && mkdir -p target/fuzz
	cd fuzz && AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
	  $(CARGO) afl fuzz -V $(FUZZ_SECONDS) -i corpus -o ../target/fuzz/out target/release/parse >../target/fuzz/afl.log 2>&1 \
	  || { tail -n 30 ../target/fuzz/afl.log >&2; exit 1; }
	@grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|edges_found|saved_crashes|saved_hangs) ' target/fuzz/out/default/fuzzer_stats
	@crashes=$$(find target/fuzz/out/default/crashes -type f ! -name README.txt | wc -l); \
	  if [ "$$crashes" -ne 0 ]; then echo "fuzz: $$crashes crashing inputs in target/fuzz/out/default/crashes"; exit 1; fi

MUTANTS_ARGS ?=

mutants: ## Mutation testing of the pure core (cargo-mutants, unit tests only; about 50 min; not in make test): counts per file from target/mutants.
	command -v cargo-mutants >/dev/null || $(CARGO) install cargo-mutants --locked
	@# Files, `--lib` and the output directory: .cargo/mutants.toml. In place: no cold build of a
	@# copied tree; cargo-mutants puts each mutated file back (do not edit src/ meanwhile).
	@# A mutant that fails a property test must not leave proptest-regressions/ behind.
	@rc=0; PROPTEST_DISABLE_FAILURE_PERSISTENCE=1 nice -n 10 $(CARGO) mutants --in-place $(MUTANTS_ARGS) || rc=$$?; \
	  cd target/mutants/mutants.out && awk -F: ' \
	    { k = FILENAME; sub(/\.txt$$/, "", k); n[$$1, k]++; t[k]++; f[$$1] = 1 } \
	    END { printf "%-26s %7s %7s %9s %9s\n", "file", "caught", "missed", "unviable", "timeout"; \
	      for (x in f) printf "%-26s %7d %7d %9d %9d\n", x, n[x, "caught"], n[x, "missed"], n[x, "unviable"], n[x, "timeout"] | "sort"; \
	      close("sort"); \
	      printf "%-26s %7d %7d %9d %9d\n", "total", t["caught"], t["missed"], t["unviable"], t["timeout"] }' \
	    caught.txt missed.txt unviable.txt timeout.txt; exit $$rc

bench-smoke: tools ## The benchmark at a tiny size, debug build (CI runs it); its logs searched for API keys.
	$(CARGO) build -p vast-operator -p vast-operator-bench
	rm -f target/bench/*.log
	BENCH_OPERATOR_LOG=info,vast_operator=debug target/debug/vast-operator-bench --sizes 10 --interval 5 --steady-intervals 1 \
	  --churn-intervals 1 --baseline-max 5 --baseline-rounds 1 \
	  --operator target/debug/vast-operator --out target/bench/smoke.jsonl
	rm -rf target/bench/leak && mkdir -p target/bench/leak && cp target/bench/operator-10*.log target/bench/smoke.jsonl target/bench/leak/
	hack/leak-search.sh target/bench/leak --min-files 4 --min-lines 100

IMAGE ?= localhost/vast-operator:dev
export IMAGE

image: ## Build the release binary and the container image IMAGE (podman; CONTAINER_ENGINE=docker; IMAGE_BASE: distroless, or `local` from Debian's packages); last line `image: <name>`.
	@hack/image.sh

image-test: image tools ## Run IMAGE as the chart's pod would (real control plane, fake Vast over HTTPS), its logs searched for API keys.
	hack/image-test.sh

cluster: ## Start the local control plane with CoreDNS (idempotent); prints the KUBECONFIG and VAST_CLUSTER_DNS exports.
	@hack/cluster.sh up

cluster-down: ## Stop the local control plane and delete its data.
	@hack/cluster.sh down

tools: ## Build the control plane, CoreDNS, kubectl, helm and the health checker from the Go module proxy (cached).
	hack/tools.sh kube-apiserver kube-controller-manager kubectl etcd coredns helm health-check

crds: build ## Regenerate crds/ (and the chart's copy) from the Rust types.
	$(BIN) crd > crds/workergroups.vast.ai.yaml
	cp crds/workergroups.vast.ai.yaml charts/vast-operator/files/

build: ## Build the operator and the fake Vast server (target/debug/fake-vast).
	$(CARGO) build --workspace

clean: cluster-down ## Remove build output and the local control plane.
	$(CARGO) clean
	rm -rf hack/bin .demo
