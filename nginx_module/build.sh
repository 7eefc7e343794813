#!/usr/bin/env bash
# Build ngx_http_ipr_module.so against the nginx installed from Debian
# (packages nginx and nginx-dev): same version, same configure flags, so
# load_module accepts it. Usage: nginx_module/build.sh [OUTPUT_DIR]
#   NGINX_SRC=/path/to/nginx-x.y.z    build against other sources instead
#   IPR_CFLAGS="-fsanitize=address"  extra compiler flags (an ASan build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${NGINX_SRC:-/usr/share/nginx/src}
out=${1:-$here/../var/nginx_module}
[ -x "$src/configure" ] || { echo "no nginx sources in $src: apt-get install nginx-dev" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src"/. "$work"/
cd "$work"
flags=()
if [ -f conf_flags ]; then
    . ./conf_flags          # Debian's: defines NGX_CONF_FLAGS
    flags=("${NGX_CONF_FLAGS[@]}")
fi
./configure "${flags[@]}" --with-cc-opt="-Wall -Werror ${IPR_CFLAGS:-}" \
    ${IPR_LDFLAGS:+--with-ld-opt="$IPR_LDFLAGS"} --add-dynamic-module="$here" > configure.log 2>&1 \
    || { tail -20 configure.log >&2; exit 1; }
make -f objs/Makefile modules > make.log 2>&1 || { grep -B2 -A8 -E "error|Error" make.log >&2; exit 1; }
mkdir -p "$out"
cp objs/ngx_http_ipr_module.so "$out/"
echo "$out/ngx_http_ipr_module.so"
