#!/usr/bin/env bash
# Runs one SQL query with DuckDB (the @duckdb/node-api npm package) and
# prints the rows as a JSON array, so a test can check that finelog's
# parquet segments are plain parquet another engine reads, attributes
# column included. The package is installed with npm into a cache
# directory on first use (FINELOG_DUCKDB_DIR, default
# ${TMPDIR:-/tmp}/finelog-duckdb-<version>); needs node and npm.
#
#   scripts/duckdb-check.sh "select count(*) as n from '/data/seg-1-9.parquet'"
#
# Exits non-zero, saying why, when node or npm is missing, the install
# fails, or the query fails.
set -euo pipefail
version=1.5.6-r.1
sql=${1:?usage: duckdb-check.sh SQL}
for tool in node npm; do
	if ! command -v "$tool" >/dev/null; then
		echo "duckdb-check: $tool is not installed (needed to run DuckDB through @duckdb/node-api)" >&2
		exit 2
	fi
done
dir=${FINELOG_DUCKDB_DIR:-${TMPDIR:-/tmp}/finelog-duckdb-$version}
if [ ! -f "$dir/node_modules/@duckdb/node-api/package.json" ]; then
	mkdir -p "$dir"
	if ! (cd "$dir" && npm install --no-audit --no-fund --silent --no-save "@duckdb/node-api@$version" >&2); then
		echo "duckdb-check: npm install @duckdb/node-api@$version into $dir failed" >&2
		exit 2
	fi
fi
cat >"$dir/query.mjs" <<'JS'
import { DuckDBInstance } from '@duckdb/node-api';
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const reader = await conn.runAndReadAll(process.argv[2]);
console.log(JSON.stringify(reader.getRowObjectsJson()));
JS
cd "$dir" && exec node query.mjs "$sql"
