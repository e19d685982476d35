package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/runtime"
)

// retentionFlags are --run-retention and --dlq-retention (ferry serve,
// ferry run) and their environment variables.
type retentionFlags struct {
	declared bool
	// owner: an unset retention is the default (ferry serve owns its
	// store); otherwise the store keeps what it has (ferry run).
	owner    bool
	run, dlq retentionValue
}

// declareRetention declares the flags; owner as for retentionFlags.
func (f *connFlags) declareRetention(fs *flag.FlagSet, owner bool) {
	r := &f.retention
	r.declared, r.owner = true, owner
	runDefault, dlqDefault := "default "+retentionString(runtime.DefaultRunRetention), "default 0"
	if !owner {
		runDefault = "unset: the store keeps its retention; a new one gets " + retentionString(runtime.DefaultRunRetention)
		dlqDefault = "unset: the store keeps its retention; a new one gets 0"
	}
	fs.Var(&r.run, "run-retention", fmt.Sprintf("keep run history (runs with their counts and errors) for `DURATION` after a run's last change: 30d, 12h (env FERRY_RUN_RETENTION; %s; at least %s)",
		runDefault, runtime.MinRetention))
	fs.Var(&r.dlq, "dlq-retention", fmt.Sprintf("keep DLQ entries for `DURATION` after their last change (failure, replay, discard): 90d; 0 keeps them until deleted (env FERRY_DLQ_RETENTION; %s)", dlqDefault))
}

// apply sets the runtime's retention options from the flags, else the
// environment.
func (r *retentionFlags) apply(opts *runtime.Options) error {
	if !r.declared {
		opts.KeepRetention = true // tools never change a store's retention
		return nil
	}
	for _, v := range []struct {
		flag, env string
		val       *retentionValue
		dst       *time.Duration
		zeroOK    bool
	}{
		{"--run-retention", "FERRY_RUN_RETENTION", &r.run, &opts.RunRetention, false},
		{"--dlq-retention", "FERRY_DLQ_RETENTION", &r.dlq, &opts.DLQRetention, true},
	} {
		name, err := v.val.orEnv(v.flag, v.env)
		if err != nil {
			return err
		}
		if !v.val.set {
			continue
		}
		switch d := v.val.d; {
		case d == 0 && v.zeroOK:
			if !r.owner {
				// 0 is also "keep what the store has" for a non-owner.
				return fmt.Errorf("%s 0 (keep DLQ entries until deleted) can only be set by ferry serve, which owns its store's retention", name)
			}
		case d < runtime.MinRetention:
			return fmt.Errorf("%s %s: must be at least %s, e.g. 30d", name, retentionString(d), runtime.MinRetention)
		}
		*v.dst = v.val.d
	}
	opts.KeepRetention = !r.owner
	return nil
}

// retentionValue is a duration that also takes days (30d).
type retentionValue struct {
	d   time.Duration
	set bool
}

func (v *retentionValue) String() string {
	if v == nil || !v.set {
		return ""
	}
	return retentionString(v.d)
}

// orEnv sets v from the environment variable env when its flag was not
// given, and returns the name the value came from (flag or env) for errors.
func (v *retentionValue) orEnv(flag, env string) (string, error) {
	if v.set {
		return flag, nil
	}
	s := strings.TrimSpace(os.Getenv(env))
	if s == "" {
		return flag, nil
	}
	if err := v.Set(s); err != nil {
		return env, fmt.Errorf("%s=%q: %v", env, s, err)
	}
	return env, nil
}

func (v *retentionValue) Set(s string) error {
	d, err := parseRetention(s)
	if err != nil {
		return err
	}
	v.d, v.set = d, true
	return nil
}

// parseRetention reads 30d, 12h, 90m (a Go duration, or whole days).
func parseRetention(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("write a retention as days (30d) or a duration (12h, 90m)")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("write a retention as days (30d) or a duration (12h, 90m)")
	}
	return d, nil
}

// retentionString writes whole days as 7d.
func retentionString(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
