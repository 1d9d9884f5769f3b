package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/replica"
)

// Follower is a replica's follower of the other replicas' writes
// (replica.Follower), when one runs.
type Follower interface {
	Poke(tenant string)
	Status() replica.Status
}

// Freshness gives reads their at_least_revision: read-your-writes across
// replicas. A write returns its revision; a read on any replica that names
// it waits until that replica holds the tenant at it.
type Freshness struct {
	eng      *engine.Engine
	follower Follower
	maxWait  time.Duration
}

// NewFreshness returns the waits of reads on eng, kept current by follower
// (nil when none runs), each bounded by maxWait.
func NewFreshness(eng *engine.Engine, follower Follower, maxWait time.Duration) *Freshness {
	return &Freshness{eng: eng, follower: follower, maxWait: maxWait}
}

// ReasonReplicaBehind is the ErrorInfo reason of a read this replica could
// not give at the revision asked for.
const ReasonReplicaBehind = "REPLICA_BEHIND"

// atLeast returns once the engine holds tenant at revision rev or later
// (at once when rev is 0), waiting up to the request's deadline and
// maxWait; else it answers UNAVAILABLE (REPLICA_BEHIND), which a client
// retries, on this replica or another. field names the request field.
func (f *Freshness) atLeast(ctx context.Context, field, tenant string, rev int64) error {
	switch {
	case rev == 0:
		return nil
	case rev < 0:
		return model.Invalid(field, model.ReasonInvalidValue, "must not be negative")
	}
	if cur, err := f.eng.Revision(tenant); err == nil && cur >= rev {
		return nil
	}
	if f.follower != nil {
		f.follower.Poke(tenant)
	}
	wctx, cancel := context.WithTimeout(ctx, f.maxWait)
	defer cancel()
	cur, err := f.eng.WaitRevision(wctx, tenant, rev)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case !errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return behind(tenant, cur, rev)
}

// stored checks a read from the store, which every write reaches first:
// a revision beyond the tenant's has not been written (yet).
func stored(field string, st *model.TenantState, rev int64) error {
	switch {
	case rev < 0:
		return model.Invalid(field, model.ReasonInvalidValue, "must not be negative")
	case rev > st.Revision:
		return behind(st.ID, st.Revision, rev)
	}
	return nil
}

func behind(tenant string, cur, want int64) error {
	return withDetails(codes.Unavailable,
		fmt.Sprintf("tenant %q is at revision %d here, not yet at %d: retry, on this replica or another", tenant, cur, want),
		ReasonReplicaBehind, map[string]string{"revision": strconv.FormatInt(cur, 10), "at_least_revision": strconv.FormatInt(want, 10)}).Err()
}
