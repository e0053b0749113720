#!/usr/bin/env bash
# Builds smallstep step-ca from Debian's packages (no Go proxy, no network but the Debian mirror):
# golang-github-smallstep-certificates-dev ships step-ca's `commands` package; only the thin cmd/step-ca
# wrapper is missing, so this script writes one and builds it. The binary lands in .tools/step-ca/ and is
# reused while it exists. As root it installs the two packages first; otherwise it needs them installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.tools/step-ca/step-ca
if [ -x "$out" ]; then
  echo "step-ca present ($out)"
  exit 0
fi
packages="golang-go golang-github-smallstep-certificates-dev"
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "step-ca: missing Debian packages:$missing and not root; its tests will skip" >&2
    exit 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/stepca-deb/cmd/step-ca"
cat >"$work/src/stepca-deb/cmd/step-ca/main.go" <<'GO'
// step-ca's command line around the commands package that Debian ships.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/smallstep/certificates/commands"
	"github.com/urfave/cli"

	_ "github.com/smallstep/certificates/cas/softcas"
	_ "github.com/smallstep/certificates/kms/softkms"
)

func main() {
	app := cli.NewApp()
	app.Name = "step-ca"
	app.Usage = "online certificate authority"
	app.Flags = commands.AppCommand.Flags
	app.Action = func(_ *cli.Context) error {
		set := flag.NewFlagSet(app.Name, flag.ContinueOnError)
		for _, f := range app.Flags {
			f.Apply(set)
		}
		// AppCommand.Run re-parses Args().Tail(): hand it the full command line.
		if err := set.Parse(os.Args); err != nil {
			return err
		}
		return commands.AppCommand.Run(cli.NewContext(app, set, nil))
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
GO
mkdir -p "$(dirname "$out")"
start=$(date +%s)
GOPATH="$work:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOCACHE="$work/cache" \
  go build -trimpath -ldflags='-s -w' -o "$out" stepca-deb/cmd/step-ca
echo "step-ca built in $(( $(date +%s) - start ))s ($out)"
