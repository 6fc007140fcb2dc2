#!/usr/bin/env bash
# Build the confidential Parquet jar (KmsClient, crypto factory, commit protocol) with javac
# against the Spark jars it runs with:   build.sh SPARK_JARS_DIR OUT_JAR
# Used by `make jar` (pyspark's jars), the image's builder stage (/opt/spark/jars) and the
# test session. Nothing is downloaded; the jar is replaced atomically.
set -euo pipefail
jars=${1:?usage: build.sh SPARK_JARS_DIR OUT_JAR}
out=${2:?usage: build.sh SPARK_JARS_DIR OUT_JAR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.jar-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
find "$here/src/main/java" -name '*.java' | sort > "$work/sources"
javac --release 17 -Xlint:all,-serial,-processing,-path -Werror -encoding UTF-8 \
    -cp "$jars/*" -d "$work/classes" @"$work/sources"
jar --create --file "$work/out.jar" --no-manifest -C "$work/classes" .
mv -f "$work/out.jar" "$out"
