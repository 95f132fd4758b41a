// Package logging builds the structured logger every edgefleet binary uses.
package logging

import (
	"fmt"
	"io"
	"strconv"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Options are the --log-level and --log-format flags.
type Options struct {
	Level  string
	Format string
}

// New returns a logr.Logger writing to w. Level is debug, info, error, or a
// number (higher is more verbose, as klog's -v); format is text or json.
func New(o Options, w io.Writer) (logr.Logger, error) {
	lvl, err := parseLevel(o.Level)
	if err != nil {
		return logr.Logger{}, err
	}
	var enc func(*zapcore.EncoderConfig) zapcore.Encoder
	switch o.Format {
	case "", "text":
		enc = func(c *zapcore.EncoderConfig) zapcore.Encoder {
			c.EncodeTime = zapcore.ISO8601TimeEncoder
			return zapcore.NewConsoleEncoder(*c)
		}
	case "json":
		enc = func(c *zapcore.EncoderConfig) zapcore.Encoder {
			c.EncodeTime = zapcore.ISO8601TimeEncoder
			return zapcore.NewJSONEncoder(*c)
		}
	default:
		return logr.Logger{}, fmt.Errorf("--log-format %q is not valid: use text or json", o.Format)
	}
	return zap.New(
		zap.WriteTo(w),
		zap.Level(lvl),
		zap.StacktraceLevel(zapcore.PanicLevel),
		zap.Encoder(encoderFor(enc)),
	), nil
}

func encoderFor(f func(*zapcore.EncoderConfig) zapcore.Encoder) zapcore.Encoder {
	cfg := zapcore.EncoderConfig{
		TimeKey: "ts", LevelKey: "level", NameKey: "logger", MessageKey: "msg",
		StacktraceKey: "stacktrace", LineEnding: zapcore.DefaultLineEnding,
		EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder,
	}
	return f(&cfg)
}

func parseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "", "info":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		// logr V(n) maps to zap level -n.
		return zapcore.Level(-n), nil
	}
	return 0, fmt.Errorf("--log-level %q is not valid: use debug, info, warn, error or a verbosity number", s)
}
