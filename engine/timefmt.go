package engine

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Time layouts. A layout argument is one of:
//   - a name: RFC3339, RFC3339Nano, RFC1123, RFC1123Z, RFC822, RFC822Z, DateOnly,
//     DateTime, TimeOnly, Kitchen, unix (seconds), unixms (milliseconds);
//   - a strftime pattern when it contains '%' (%Y %m %d %H %M %S %f %y %b %B %a %A
//     %p %I %z %Z %j %e %L %%);
//   - otherwise a Go reference layout ("2006-01-02 15:04").

var namedLayouts = map[string]string{
	"RFC3339":     time.RFC3339,
	"RFC3339Nano": time.RFC3339Nano,
	"RFC1123":     time.RFC1123,
	"RFC1123Z":    time.RFC1123Z,
	"RFC822":      time.RFC822,
	"RFC822Z":     time.RFC822Z,
	"DateOnly":    time.DateOnly,
	"DateTime":    time.DateTime,
	"TimeOnly":    time.TimeOnly,
	"Kitchen":     time.Kitchen,
}

// autoLayouts are tried in order by parseTime without a layout.
var autoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02 15:04",
	time.DateOnly,
	time.RFC1123Z,
	time.RFC1123,
	time.RFC850,
	time.RFC822Z,
	time.RFC822,
	time.ANSIC,
	"20060102",
}

var strftimeMap = map[byte]string{
	'Y': "2006", 'y': "06", 'm': "01", 'd': "02", 'e': "_2", 'H': "15", 'I': "03",
	'M': "04", 'S': "05", 'f': "000000", 'L': "000", 'b': "Jan", 'h': "Jan", 'B': "January",
	'a': "Mon", 'A': "Monday", 'p': "PM", 'z': "-0700", 'Z': "MST", 'j': "002", '%': "%",
}

var layoutCache sync.Map // string -> string

// goLayout converts a layout argument to a Go layout. unix/unixms return "".
func goLayout(layout string) (string, error) {
	if l, ok := namedLayouts[layout]; ok {
		return l, nil
	}
	if !strings.Contains(layout, "%") {
		return layout, nil
	}
	if l, ok := layoutCache.Load(layout); ok {
		return l.(string), nil
	}
	var b strings.Builder
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(layout) {
			return "", fmt.Errorf("time layout %q ends with a lone %%", layout)
		}
		i++
		g, ok := strftimeMap[layout[i]]
		if !ok {
			return "", fmt.Errorf("time layout %q: unsupported directive %%%c", layout, layout[i])
		}
		b.WriteString(g)
	}
	l := b.String()
	layoutCache.Store(layout, l)
	return l, nil
}

var locCache sync.Map // string -> *time.Location

func loadLocation(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if l, ok := locCache.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	locCache.Store(name, l)
	return l, nil
}

// parseTimeValue converts v to a time. Strings are parsed with layout (auto when
// ""), in loc when they carry no zone. Numbers are unix seconds (unixms: ms).
func parseTimeValue(v any, layout string, loc *time.Location) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		switch layout {
		case "unix", "unixms":
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("%q is not a %s timestamp", x, layout)
			}
			return unixTime(f, layout, loc), nil
		case "":
			for _, l := range autoLayouts {
				if t, err := time.ParseInLocation(l, s, loc); err == nil {
					return t, nil
				}
			}
			return time.Time{}, fmt.Errorf("cannot parse time %q (give a layout: parseTime(s, \"%%d.%%m.%%Y\"))", x)
		}
		gl, err := goLayout(layout)
		if err != nil {
			return time.Time{}, err
		}
		t, err := time.ParseInLocation(gl, s, loc)
		if err != nil {
			return time.Time{}, fmt.Errorf("cannot parse time %q with layout %q", x, layout)
		}
		return t, nil
	}
	f, err := toFloat(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is not a time", describe(v))
	}
	return unixTime(f, layout, loc), nil
}

func unixTime(f float64, layout string, loc *time.Location) time.Time {
	if layout == "unixms" {
		return time.UnixMilli(int64(f)).In(loc)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).In(loc)
}

func formatTimeValue(t time.Time, layout string) (any, error) {
	switch layout {
	case "unix":
		return int(t.Unix()), nil
	case "unixms":
		return int(t.UnixMilli()), nil
	}
	gl, err := goLayout(layout)
	if err != nil {
		return nil, err
	}
	return t.Format(gl), nil
}

// parseDuration accepts Go durations plus a "d" (24h) unit: "1h30m", "2d", "-1d12h".
// Numbers are seconds.
func parseDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case time.Duration:
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		neg := strings.HasPrefix(s, "-")
		rest := strings.TrimLeft(s, "+-")
		var days time.Duration
		if i := strings.IndexByte(rest, 'd'); i > 0 {
			n, err := strconv.ParseFloat(rest[:i], 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", x)
			}
			days = time.Duration(n * float64(24*time.Hour))
			rest = rest[i+1:]
		}
		var d time.Duration
		if rest != "" {
			var err error
			d, err = time.ParseDuration(rest)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (use e.g. \"90s\", \"1h30m\", \"2d\")", x)
			}
		}
		d += days
		if neg {
			d = -d
		}
		return d, nil
	}
	f, err := toFloat(v)
	if err != nil {
		return 0, fmt.Errorf("%s is not a duration", describe(v))
	}
	return time.Duration(f * float64(time.Second)), nil
}
