// Package tracing sets up OpenTelemetry tracing, off by default. With an
// OTLP endpoint, the spans of calls (the gRPC server's, through otelgrpc),
// store transactions and decision-log writes are exported over OTLP/gRPC,
// sampled by a ratio of the traces that start here (a caller's sampled
// trace is followed). The store and the decision log start their spans
// from the global provider, which Start sets; while tracing is off it is
// OpenTelemetry's no-op, which costs a call a few nanoseconds.
package tracing

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure Start.
type Options struct {
	// Endpoint is the OTLP/gRPC collector, host:port.
	Endpoint string
	// Insecure sends without TLS (a collector on the pod or the node).
	Insecure bool
	// SampleRatio is the share of traces started here that are kept,
	// 0-1.
	SampleRatio float64
	// Version is the service's version, a resource attribute.
	Version string
}

// Start exports spans to the collector and makes the provider global. The
// returned function flushes what is buffered and stops, within its
// context.
func Start(ctx context.Context, o Options) (trace.TracerProvider, func(context.Context) error, error) {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.Endpoint), otlptracegrpc.WithTimeout(5 * time.Second)}
	if o.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "crmauthz-authzd"), attribute.String("service.version", o.Version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))),
	)
	Use(tp)
	return tp, tp.Shutdown, nil
}

// Use makes tp the provider the store and the decision log trace with,
// and W3C trace context the propagation: what Start does, for a provider
// made elsewhere (tests record spans in memory).
func Use(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}
