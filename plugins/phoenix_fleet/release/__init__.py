"""Pure release logic: version scheme, Debian version ordering, package diffs (release notes), plan guard."""
