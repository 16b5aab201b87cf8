package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// ParseSize parses a size in bytes: a plain integer ("1048576") or a number with a unit, case
// insensitive, optionally separated by a space: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB. All units
// are powers of 1024 ("25MB" = 25 MiB = 26214400). Fractions are allowed with a unit ("1.5GiB") and
// rounded down to a byte. Negative sizes and sizes above math.MaxInt64 are errors.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	var mult int64
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = KiB
	case "m", "mb", "mib":
		mult = MiB
	case "g", "gb", "gib":
		mult = GiB
	case "t", "tb", "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("%q: unknown unit %q (use B, KB, MB, GB or TB)", s, t[i:])
	}
	if num == "" || strings.Trim(num, "0123456789.") != "" || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("%q is not a size such as 1048576 or \"25MB\"", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size such as 1048576 or \"25MB\"", s)
	}
	b := f * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(b), nil
}

// decodeHook converts strings into sizes, durations and lists while decoding the merged settings.
func decodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		sizeHook,
		durationHook,
		mapstructure.StringToSliceHookFunc(","),
	)
}

// sizeHook parses size strings into the int64 fields (all of which are byte sizes).
func sizeHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Int64 || to == reflect.TypeFor[time.Duration]() || from.Kind() != reflect.String {
		return data, nil
	}
	return ParseSize(data.(string))
}

// durationHook parses Go durations and refuses bare numbers, which would silently be nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() || from == to {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration such as \"90s\", \"15m\" or \"72h\"", data)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if reflect.ValueOf(data).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v has no unit: write a duration such as \"90s\", \"15m\" or \"72h\"", data)
	}
	return data, nil
}
