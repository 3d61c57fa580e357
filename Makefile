# The two commands a new user needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SOURCES := $(shell find src_cython -name '*.pyx' -o -name '*.pxd') setup.py pyproject.toml
COMPILED := active_quoting.core._units_c active_quoting.core._book_c active_quoting.core._quote_c active_quoting.core._markout_c active_quoting.core._fair_c

.PHONY: run test test-debug lint bench bench-compare latency flood build clean sim

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=68" wheel "Cython>=3.0.10"

# Editable install with the extensions compiled; re-run whenever a .pyx/.pxd or the build changes.
$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $(STAMP)

build: $(STAMP)

# The bot against the embedded exchange: 3 assets, 1-minute windows (so rollovers happen),
# a fixed seed, 3 minutes, then its report. RUN_ARGS overrides, e.g. RUN_ARGS="--duration 600".
RUN_ARGS ?= --assets btc,eth,sol --window-seconds 60 --duration 180 --seed 7
run: $(STAMP)
	rm -f run.db run.db-wal run.db-shm
	$(VENV)/bin/active-quoting run $(RUN_ARGS) --db run.db

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks setup.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cython-lint --max-line-length 120 src_cython
	$(PY) -m mypy.stubtest --allowlist src_cython/stubtest_allowlist.txt $(COMPILED)

# Compiled leg (a failed compiled import is a crash), pure-Python leg, then the benchmark smoke.
test: $(STAMP) lint
	AQ_REQUIRE_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider tests
	AQ_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider tests
	AQ_REQUIRE_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider benchmarks --benchmark-disable
	$(MAKE) test-debug

# The core suite under a build with bounds, wraparound and overflow checks on (an overflow in
# a noexcept helper shows up as a hang there, hence the timeout), then the optimized build back.
CORE_TESTS := tests/test_units.py tests/test_book.py tests/test_market_data.py tests/test_core_select.py \
	tests/test_quote.py tests/test_markout.py tests/test_quoting.py tests/test_fill_analytics.py tests/test_fair.py
test-debug: $(PY)
	rm -f $(STAMP)
	AQ_DEBUG_BUILD=1 $(PY) -m pip install --quiet --no-build-isolation -e '.[test]'
	AQ_REQUIRE_EXTENSIONS=1 timeout 600 $(PY) -m pytest -q -p no:cacheprovider $(CORE_TESTS)
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $(STAMP)

bench: $(STAMP)
	AQ_REQUIRE_EXTENSIONS=1 $(PY) -m pytest -q benchmarks --benchmark-group-by=group \
		--benchmark-columns=min,median,mean,stddev,rounds --benchmark-sort=name

# Regression check on ratios measured within one run (compiled/twin, ours/SDK, ours/stock) against
# benchmarks/baseline.json: exit 1 when a ratio dropped beyond the margin (25%) or a benchmark is
# missing. The core pairs take about a minute; LATENCY=1 adds the black-box harness (3-4 minutes).
LATENCY ?= 0
bench-compare: $(STAMP)
	@if [ "$(LATENCY)" = 1 ]; then \
		out=$$(mktemp -d)/latency.json && \
		AQ_REQUIRE_EXTENSIONS=1 $(PY) benchmarks/latency.py --scenario market --moves 48 --json $$out && \
		AQ_REQUIRE_EXTENSIONS=1 $(PY) benchmarks/compare.py --latency $$out; \
	else AQ_REQUIRE_EXTENSIONS=1 $(PY) benchmarks/compare.py; fi

# Black-box: the venue in its own process stamps a touch-moving frame and the requests that follow;
# the bot as a user starts it against json + dict book + py-clob-client-v2; then spot moves on the
# RTDS socket against the bot run --strategy spot, to the cancel of the exposed quote (about 6 minutes).
latency: $(STAMP)
	AQ_REQUIRE_EXTENSIONS=1 $(PY) benchmarks/latency.py --scenario all --moves 48

# The bot flooded with depth changes away from the touch on 16 markets (issue 11: CPU per frame
# with no order to send, keeping up with 20,000 frames/s), then at 5,000/s.
flood: $(STAMP)
	AQ_REQUIRE_EXTENSIONS=1 $(PY) benchmarks/flood.py --rate 20000 --seconds 20 --markets 16
	AQ_REQUIRE_EXTENSIONS=1 $(PY) benchmarks/flood.py --rate 5000 --seconds 20 --markets 16

clean:
	rm -rf build $(VENV) src/*.egg-info
	find src -name '*.so' -delete
	find src_cython -name '*.c' -delete

# The bot on virtual time: a short A/B of the strategies (2 seeds x 2 simulated hours x 4 markets),
# then a short soak with every fault and a crash. SIM_ARGS overrides the A/B's arguments.
SIM_ARGS ?= --hours 2 --markets 4 --seeds 1-2 --strategy active,spot,only50,naive --report sim-ab.html
sim: $(STAMP)
	$(VENV)/bin/active-quoting sim $(SIM_ARGS)
	$(VENV)/bin/active-quoting sim --hours 2 --markets 4 --faults default --crashes 1
