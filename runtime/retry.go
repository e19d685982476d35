package runtime

import (
	"math"
	"math/rand/v2"
	"time"
)

// RetryPolicy is an integration's retry block with defaults applied.
type RetryPolicy struct {
	MaxAttempts int
	Initial     time.Duration
	Max         time.Duration
	Multiplier  float64
	Jitter      float64 // 0..1: the delay varies by ±Jitter of itself
}

// DefaultRetry is used when an integration has no retry block.
var DefaultRetry = RetryPolicy{MaxAttempts: 5, Initial: time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: 0.2}

// Backoff returns the delay before attempt+1 after `attempt` failed attempts
// (attempt ≥ 1): min(Max, Initial·Multiplier^(attempt-1)), varied by ±Jitter, and
// never less than the sink's Retry-After. rnd returns a number in [0,1); nil uses
// math/rand.
func (p RetryPolicy) Backoff(attempt int, retryAfter time.Duration, rnd func() float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	mult := p.Multiplier
	if mult < 1 {
		mult = 1
	}
	d := float64(p.Initial) * math.Pow(mult, float64(attempt-1))
	if p.Max > 0 && d > float64(p.Max) {
		d = float64(p.Max)
	}
	if p.Jitter > 0 {
		if rnd == nil {
			rnd = rand.Float64
		}
		d += d * p.Jitter * (2*rnd() - 1)
	}
	if d < 0 {
		d = 0
	}
	delay := time.Duration(d)
	if retryAfter > delay {
		delay = retryAfter
	}
	return delay
}
