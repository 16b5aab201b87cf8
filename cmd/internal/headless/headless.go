// Package headless finds and starts the Chromium that the web console's browser tests and
// cmd/consolecheck drive: headless, no sandbox (CI runs as root), no background networking, a fresh
// profile.
package headless

import (
	"context"
	"errors"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium says that no Chromium was found, and how to get one.
var ErrNoChromium = errors.New("no Chromium found: install it (Debian: apt-get install chromium) or set CAU_CHROMIUM to its path")

// ExecPath returns $CAU_CHROMIUM, else the first of the usual Chromium names on $PATH or in the
// usual places; ErrNoChromium when there is none.
func ExecPath() (string, error) {
	if p := os.Getenv("CAU_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/lib/chromium/chromium", "/snap/bin/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// NewContext starts Chromium at path with a fresh profile in userDataDir and returns a chromedp
// context for one tab, and the function that stops the browser.
func NewContext(path, userDataDir string) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(userDataDir),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	return ctx, func() { cancelCtx(); cancelAlloc() }
}
