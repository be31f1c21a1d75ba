package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/client"
	"github.com/finelog/finelog/ingest"
	"github.com/finelog/finelog/internal/wirecompress"
	"github.com/finelog/finelog/store"
)

// Routes of the shipper protocols. The gRPC one is what OTLP exporters
// call; Connect serves it next to the LogService on the same port.
const (
	LokiPushPath          = "/loki/api/v1/push"
	OTLPLogsPath          = "/v1/logs"
	OTLPLogsExportProcess = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
)

// ingestRoutes mounts Loki push and OTLP logs on the gated mux. wrap is
// the same in-flight budget and accounting PushLogs goes through; the
// identity rule, the fsync'd ack and the store error mapping are
// PushLogs' too.
func (s *Server) ingestRoutes(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	in := &ingester{
		s: s,
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_ingest_rows_total",
			Help: "Rows stored from shipper protocols, by protocol (loki, otlp).",
		}, []string{"protocol"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "finelog_ingest_refused_rows_total",
			Help: "Log lines of shipper pushes refused for a limit or a bad stream, by protocol; the rest of each push was stored.",
		}, []string{"protocol"}),
	}
	s.reg.MustRegister(in.rows, in.refused)
	mux.Handle("POST "+LokiPushPath, wrap(http.HandlerFunc(in.lokiPush)))
	mux.Handle("POST "+OTLPLogsPath, wrap(http.HandlerFunc(in.otlpHTTP)))
	mux.Handle(OTLPLogsExportProcess, wrap(connect.NewUnaryHandler(OTLPLogsExportProcess, in.otlpExport,
		append(wirecompress.HandlerOptions(),
			connect.WithReadMaxBytes(int(s.cfg.MaxRequestBytes)),
			connect.WithCodec(otlpProtoCodec{}), connect.WithCodec(otlpJSONCodec{}),
			connect.WithInterceptors(s.m.interceptor()))...)))
}

type ingester struct {
	s             *Server
	rows, refused *prometheus.CounterVec
}

// store appends a decoded batch: the cluster of every row is decided by
// the PushLogs rule (a jwt identity writes only its own), then one Append,
// acknowledged after fsync, attributes included.
func (in *ingester) store(ctx context.Context, protocol string, b *ingest.Batch) error {
	if len(b.Rows) == 0 {
		in.refused.WithLabelValues(protocol).Add(float64(b.RejectedRecords()))
		return nil
	}
	if err := in.s.refuseIfReplica(); err != nil {
		return err
	}
	st, err := in.s.store()
	if err != nil {
		return err
	}
	clusters := map[string]string{}
	rows := make([]store.Row, len(b.Rows))
	for i := range b.Rows {
		r := b.Rows[i].Row
		c, ok := clusters[r.Cluster]
		if !ok {
			if c, err = in.s.stampCluster(callerFrom(ctx), r.Cluster); err != nil {
				return err
			}
			clusters[r.Cluster] = c
		}
		r.Cluster = c
		// As for PushLogs: a key's trailing ":<int>" is its attempt.
		r.AttemptID = attemptFromKey(r.Key)
		rows[i] = r
	}
	ack, err := st.Append(ctx, store.Batch{Rows: rows})
	if err != nil {
		return in.s.storeError(protocol+" push", err)
	}
	// Held like a PushLogs ack until --min-replica-acks replicas synced it.
	if err := in.s.awaitReplicas(ctx, st, ack); err != nil {
		return err
	}
	if ack.Last > 0 {
		in.rows.WithLabelValues(protocol).Add(float64(ack.Last - ack.First + 1))
	}
	in.refused.WithLabelValues(protocol).Add(float64(b.RejectedRecords()))
	return nil
}

// lokiPush is POST /loki/api/v1/push: 204 once stored; 400 naming the
// streams refused (the others are stored: shippers drop a 400 and move
// on); 429/503 when busy or the disk is full (shippers retry).
func (in *ingester) lokiPush(w http.ResponseWriter, r *http.Request) {
	if _, err := in.s.store(); err != nil {
		writeText(w, err)
		return
	}
	mt, err := mediaType(r)
	if err == nil && mt != "" && mt != "application/x-protobuf" && mt != "application/json" {
		err = fmt.Errorf("Content-Type %q is not a Loki push: send application/x-protobuf (snappy-compressed) or application/json", mt)
	}
	if err != nil {
		writeText(w, &httpError{http.StatusUnsupportedMediaType, err.Error()})
		return
	}
	body, err := in.readBody(r)
	if err != nil {
		writeText(w, err)
		return
	}
	now := in.s.clk.Now().UnixMilli()
	var b ingest.Batch
	if mt == "application/json" {
		b, err = ingest.DecodeLokiJSON(body, now)
	} else {
		// Loki reads a push without a Content-Type as protobuf, and so
		// do we.
		b, err = ingest.DecodeLokiProto(body, in.s.cfg.MaxRequestBytes, now)
	}
	if err != nil {
		writeText(w, &httpError{http.StatusBadRequest, "nothing was stored: " + err.Error()})
		return
	}
	if err := in.store(r.Context(), ingest.SourceLoki, &b); err != nil {
		writeText(w, err)
		return
	}
	if len(b.Rejected) > 0 {
		writeText(w, &httpError{http.StatusBadRequest, fmt.Sprintf("%d entries stored, %d refused (do not retry them):\n%s",
			len(b.Rows), b.RejectedRecords(), b.RejectionMessage())})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// otlpHTTP is OTLP/HTTP POST /v1/logs, protobuf or JSON, answered in the
// request's encoding. Records refused for a limit are reported in
// partial_success; the export itself succeeds.
func (in *ingester) otlpHTTP(w http.ResponseWriter, r *http.Request) {
	mt, err := mediaType(r)
	isJSON := mt == "application/json"
	if err == nil && !isJSON && mt != "application/x-protobuf" {
		err = fmt.Errorf("Content-Type %q is not OTLP/HTTP: send application/x-protobuf or application/json", mt)
	}
	if err != nil {
		writeOTLPStatus(w, isJSON, &httpError{http.StatusUnsupportedMediaType, err.Error()})
		return
	}
	if _, err := in.s.store(); err != nil {
		writeOTLPStatus(w, isJSON, err)
		return
	}
	body, err := in.readBody(r)
	if err != nil {
		writeOTLPStatus(w, isJSON, err)
		return
	}
	now := in.s.clk.Now().UnixMilli()
	var b ingest.Batch
	if isJSON {
		var req *collogspb.ExportLogsServiceRequest
		if req, err = ingest.UnmarshalOTLPJSON(body); err == nil {
			b = ingest.DecodeOTLP(req, now)
		}
	} else {
		// body is this request's own buffer, never reused: the rows may
		// point into it.
		b, err = ingest.DecodeOTLPProto(body, now)
	}
	if err != nil {
		writeOTLPStatus(w, isJSON, &httpError{http.StatusBadRequest, "nothing was stored: " + err.Error()})
		return
	}
	resp, err := in.export(r.Context(), &b)
	if err != nil {
		writeOTLPStatus(w, isJSON, err)
		return
	}
	writeOTLP(w, isJSON, http.StatusOK, resp)
}

// otlpExport is OTLP/gRPC LogsService/Export.
func (in *ingester) otlpExport(ctx context.Context, req *connect.Request[otlpExportRequest]) (*connect.Response[collogspb.ExportLogsServiceResponse], error) {
	now := in.s.clk.Now().UnixMilli()
	var b ingest.Batch
	if req.Msg.msg != nil {
		b = ingest.DecodeOTLP(req.Msg.msg, now)
	} else {
		var err error
		if b, err = ingest.DecodeOTLPProto(req.Msg.body, now); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("nothing was stored: %w", err))
		}
	}
	resp, err := in.export(ctx, &b)
	if err != nil {
		// OTLP/gRPC exporters retry UNAVAILABLE but RESOURCE_EXHAUSTED
		// only with RetryInfo; a full disk is worth retrying.
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted && ce.Meta().Get(client.RetryHeader) != "" {
			return nil, connect.NewError(connect.CodeUnavailable, errors.New(ce.Message()))
		}
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (in *ingester) export(ctx context.Context, b *ingest.Batch) (*collogspb.ExportLogsServiceResponse, error) {
	if err := in.store(ctx, ingest.SourceOTLP, b); err != nil {
		return nil, err
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if len(b.Rejected) > 0 {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{
			RejectedLogRecords: int64(b.RejectedRecords()),
			ErrorMessage:       b.RejectionMessage(),
		}
	}
	return resp, nil
}

// mediaType is the request's Content-Type without parameters ("" when
// there is none).
func mediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	return mt, nil
}

// readBody reads a shipper's body (inflated by the intake) and stops
// one byte past --max-request-bytes: a body is never inflated further
// than the limit it is refused at.
func (in *ingester) readBody(r *http.Request) ([]byte, error) {
	// The intake has already inflated gzip, zstd and deflate and removed
	// the header; anything left is an encoding nobody inflates.
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		return nil, &httpError{http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Encoding %q is not supported: use gzip, zstd, deflate or none", enc)}
	}
	limit := in.s.cfg.MaxRequestBytes
	// Size the buffer up front so a large push is not copied on every
	// doubling; +1 so the read that sees EOF does not grow it.
	hint := sizeHint(r)
	body, err := readAllSized(io.LimitReader(r.Body, limit+1), min(max(hint+1, 512), limit+1))
	if err != nil {
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return nil, contextError(ctxErr)
		}
		var oe *oversizeError
		if errors.As(err, &oe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge,
				fmt.Sprintf("body is over %d bytes (after decompression), the --max-request-bytes limit: send smaller batches", limit)}
		}
		if connect.CodeOf(err) == connect.CodeResourceExhausted {
			return nil, &httpError{http.StatusTooManyRequests, "finelogd is busy: " + err.Error()}
		}
		return nil, &httpError{http.StatusBadRequest, "reading the body: " + err.Error()}
	}
	if int64(len(body)) > limit {
		return nil, &httpError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body is over %d bytes (after decompression), the --max-request-bytes limit: send smaller batches", limit)}
	}
	return body, nil
}

// readAllSized is io.ReadAll starting from a buffer of size bytes.
func readAllSized(r io.Reader, size int64) ([]byte, error) {
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// httpError is an answer decided here, with the status shippers act on.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// httpStatus maps an error to the status Loki and OTLP/HTTP shippers act
// on: 4xx other than 429 they drop, 429 and 503 they retry.
func httpStatus(err error) (status int, msg string, retryAfter string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.msg, ""
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return http.StatusInternalServerError, err.Error(), ""
	}
	msg = ce.Message()
	switch ce.Code() {
	case connect.CodeInvalidArgument:
		return http.StatusBadRequest, msg, ""
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized, msg, ""
	case connect.CodePermissionDenied:
		return http.StatusForbidden, msg, ""
	case connect.CodeResourceExhausted:
		if ce.Meta().Get(client.RetryHeader) == "disk-full" {
			return http.StatusServiceUnavailable, msg, "30"
		}
		return http.StatusTooManyRequests, msg, "1"
	case connect.CodeUnavailable, connect.CodeCanceled:
		return http.StatusServiceUnavailable, msg, "1"
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout, msg, ""
	default:
		return http.StatusInternalServerError, msg, ""
	}
}

// writeText answers a Loki push: Loki's own errors are plain text.
func writeText(w http.ResponseWriter, err error) {
	status, msg, retryAfter := httpStatus(err)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// writeOTLPStatus answers a failed OTLP/HTTP export with a google.rpc.Status,
// as the OTLP/HTTP spec asks, in the request's encoding.
func writeOTLPStatus(w http.ResponseWriter, isJSON bool, err error) {
	status, msg, retryAfter := httpStatus(err)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	// A decoder's message may quote the sender's bytes; a Status must be
	// valid UTF-8 to encode at all.
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	writeOTLP(w, isJSON, status, &statuspb.Status{Code: int32(grpcCode(status)), Message: msg})
}

// grpcCode is the google.rpc.Code that matches an HTTP status.
func grpcCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return connect.CodeInvalidArgument
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return connect.CodeResourceExhausted
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusServiceUnavailable:
		return connect.CodeUnavailable
	case http.StatusGatewayTimeout:
		return connect.CodeDeadlineExceeded
	default:
		return connect.CodeInternal
	}
}

func writeOTLP(w http.ResponseWriter, isJSON bool, status int, m proto.Message) {
	var body []byte
	var err error
	if isJSON {
		w.Header().Set("Content-Type", "application/json")
		body, err = protojson.Marshal(m)
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		body, err = proto.Marshal(m)
	}
	if err != nil {
		status, body = http.StatusInternalServerError, nil
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
