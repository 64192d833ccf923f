package api

import (
	"context"
	"sync"
)

// AuditEvent is an event a resolver asks the front door to audit.
type AuditEvent struct {
	// Event is the log event's name (kebab-case).
	Event string
	// Attrs are key/value pairs as log/slog takes them; never a token or
	// a secret.
	Attrs []any
}

// auditKey carries an *auditRecords in the context a resolver gets.
type auditKey struct{}

type auditRecords struct {
	mu     sync.Mutex
	events []AuditEvent
}

// Audit asks the front door to write event with attrs (see [AuditEvent])
// into its log for the capture being resolved with ctx: resolvers are
// libraries and do not log. The front door writes it, with the user and
// the connection, once the capture has passed its limits and starts; a
// capture refused after Resolve writes none. Outside a context of
// [CollectAudit] it does nothing.
func Audit(ctx context.Context, event string, attrs ...any) {
	r, _ := ctx.Value(auditKey{}).(*auditRecords)
	if r == nil {
		return
	}
	r.mu.Lock()
	r.events = append(r.events, AuditEvent{Event: event, Attrs: attrs})
	r.mu.Unlock()
}

// CollectAudit returns ctx collecting the [Audit] events of what is done
// with it, and a function returning those collected so far.
func CollectAudit(ctx context.Context) (context.Context, func() []AuditEvent) {
	r := &auditRecords{}
	return context.WithValue(ctx, auditKey{}, r), func() []AuditEvent {
		r.mu.Lock()
		defer r.mu.Unlock()
		return append([]AuditEvent(nil), r.events...)
	}
}
