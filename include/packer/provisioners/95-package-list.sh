#!/usr/bin/env bash
# 95-package-list.sh: the package list that goes with the AMI (release notes, CVE lookups).
#
# Writes /var/lib/phoenix/packages.tsv: one line per installed package, "name<TAB>version",
# sorted by name (C locale), no header. The template's file provisioner downloads it as
# packages-<role>-<version>.tsv next to the manifest. It also stays on the image.
# Idempotent: rewrites the file.
set -euo pipefail

out=/var/lib/phoenix/packages.tsv
install -d -m 0755 /var/lib/phoenix
dpkg-query -W -f='${db:Status-Status}\t${Package}\t${Version}\n' \
  | awk -F '\t' '$1 == "installed" { print $2 "\t" $3 }' \
  | LC_ALL=C sort -u >"${out}.new"
if [ ! -s "${out}.new" ]; then
  echo "95-package-list: dpkg-query listed no installed packages" >&2
  exit 1
fi
chmod 0644 "${out}.new"
mv "${out}.new" "$out"
echo "95-package-list: $(wc -l <"$out") packages in ${out}"
