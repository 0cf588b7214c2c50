#!/bin/sh
# Offline build of the Openfire plugin userregister.jar, used by CI.
#
#   openfire-plugin/build.sh OUTDIR [--test]
#
# Compiles the compile-only stand-ins in stubs/ (Openfire and Tinder classes), compiles the
# plugin against them with javac --release 8, and assembles OUTDIR/userregister.jar (plugin.xml,
# readme.html, changelog.html, logos, lib/userregister.jar, web/WEB-INF/web.xml, database/*.sql).
# The stand-ins are never packaged. With --test it also compiles and runs the JUnit 4 tests,
# including a test of the finished jar's layout and a test of the install script and the copy
# table on a real HSQLDB 2 (Openfire's embedded database: 2.3 in 4.1.6, 2.7 in 5.x).
# Everything it writes goes under OUTDIR.
#
# Needs only Debian packages: openjdk-17-jdk-headless junit4 libdom4j-java libslf4j-java
# libservlet-api-java, and for --test libhsqldb-java.
set -eu

usage() {
    echo "usage: $0 OUTDIR [--test]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
OUT=$1
shift
TEST=0
for arg in "$@"; do
    case "$arg" in
    --test) TEST=1 ;;
    *) usage ;;
    esac
done

HERE=$(cd "$(dirname "$0")" && pwd)
# Resolve OUTDIR without creating it first, so that a wrong path leaves no trace in the tree.
case "$OUT" in
/*) ABS=$OUT ;;
*) ABS=$(pwd)/$OUT ;;
esac
case "$ABS/" in
"$HERE"/*) echo "build.sh: OUTDIR must be outside the source tree ($HERE)" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case "$OUT/" in
"$HERE"/*) echo "build.sh: OUTDIR must be outside the source tree ($HERE)" >&2; exit 2 ;;
esac

JAVA_LIB=${JAVA_LIB:-/usr/share/java}
need_jar() {
    if [ ! -f "$JAVA_LIB/$1" ]; then
        echo "build.sh: missing $JAVA_LIB/$1 (install the Debian package $2)" >&2
        exit 1
    fi
    printf '%s' "$JAVA_LIB/$1"
}
for tool in javac jar java; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build.sh: $tool not found (openjdk-17-jdk-headless)" >&2; exit 1; }
done
DOM4J=$(need_jar dom4j.jar libdom4j-java)
SLF4J=$(need_jar slf4j-api.jar libslf4j-java)
SERVLET=$(need_jar servlet-api.jar libservlet-api-java)

rm -rf "$OUT/stubs-classes" "$OUT/classes" "$OUT/plugin" "$OUT/test-classes" "$OUT/userregister.jar"
mkdir -p "$OUT/stubs-classes" "$OUT/classes" "$OUT/plugin/lib" "$OUT/plugin/web/WEB-INF" "$OUT/plugin/database"

JAVAC="javac --release 8 -encoding UTF-8 -Xlint:all,-options -Werror"

echo "== stand-ins"
find "$HERE/stubs" -name '*.java' | sort >"$OUT/stubs.list"
$JAVAC -cp "$DOM4J" -d "$OUT/stubs-classes" @"$OUT/stubs.list"

echo "== plugin classes"
find "$HERE/src/java" -name '*.java' | sort >"$OUT/main.list"
$JAVAC -cp "$OUT/stubs-classes:$DOM4J:$SLF4J:$SERVLET" -d "$OUT/classes" @"$OUT/main.list"

echo "== plugin jar"
jar --create --file "$OUT/plugin/lib/userregister.jar" -C "$OUT/classes" .
for f in plugin.xml readme.html changelog.html logo_small.gif logo_large.gif; do
    cp "$HERE/$f" "$OUT/plugin/$f"
done
cp "$HERE/src/web/WEB-INF/web.xml" "$OUT/plugin/web/WEB-INF/web.xml"
cp "$HERE"/database/*.sql "$OUT/plugin/database/"
jar --create --file "$OUT/userregister.jar" --no-manifest -C "$OUT/plugin" .
echo "built $OUT/userregister.jar"

[ "$TEST" = 1 ] || exit 0

echo "== tests"
JUNIT=$(need_jar junit4.jar junit4)
HAMCREST=$(need_jar hamcrest-core.jar junit4)
HSQLDB=$(need_jar hsqldb.jar libhsqldb-java)
mkdir -p "$OUT/test-classes"
find "$HERE/src/test/java" -name '*.java' | sort >"$OUT/test.list"
TEST_CP="$OUT/classes:$OUT/stubs-classes:$DOM4J:$SLF4J:$SERVLET:$JUNIT:$HAMCREST"
$JAVAC -cp "$TEST_CP" -d "$OUT/test-classes" @"$OUT/test.list"
CLASSES=$(cd "$OUT/test-classes" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
# slf4j without a binding prints a three-line warning; slf4j-nop keeps the output to JUnit's.
NOP=""
[ -f "$JAVA_LIB/slf4j-nop.jar" ] && NOP=":$JAVA_LIB/slf4j-nop.jar"
java -Dimgw.pluginJar="$OUT/userregister.jar" -Dimgw.sourceDir="$HERE" \
    -cp "$OUT/test-classes:$TEST_CP:$HSQLDB$NOP" org.junit.runner.JUnitCore $CLASSES
