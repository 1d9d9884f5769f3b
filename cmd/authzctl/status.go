package main

import (
	"context"
	"fmt"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const statusHelp = `Usage: authzctl status

Shows the state of the replica it reaches (AuditService.GetLogStatus): how
callers authenticate, the decision log (mode, queue, written, dropped) and,
on PostgreSQL, whether the replica follows the others' writes and how far
behind it may be. Needs an audit credential. Ask each replica directly
(--addr), not through a load balancer, to see each one.

Example:
  authzctl --addr 10.0.0.7:50051 status
`

func runStatus(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("status", statusHelp)
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	w := &c.out
	fmt.Fprintf(w, "authentication:  %s\n", resp.GetAuthentication())
	fmt.Fprintf(w, "decision log:    %s, %s; queued %d of %d, recorded %d, written %d, dropped %d allowed / %d denied, write errors %d\n",
		resp.GetMode(), resp.GetStorage(), resp.GetQueued(), resp.GetQueueCapacity(), resp.GetRecorded(), resp.GetWritten(),
		resp.GetDroppedAllowed(), resp.GetDroppedDenied(), resp.GetWriteErrors())
	if dir := resp.GetSpoolDir(); dir != "" {
		fmt.Fprintf(w, "spool:           %s; %d entries not yet shipped (%s of %s), %d errors\n", dir, resp.GetSpoolEntries(),
			byteSize(resp.GetSpoolBytes()), byteSize(resp.GetSpoolCapacityBytes()), resp.GetSpoolErrors())
	}
	if resp.GetDegraded() {
		fmt.Fprintf(w, "                 DEGRADED since %s: writes to the database fail; decisions wait in the spool (or the queue)\n",
			timeText(resp.GetDegradedTime()))
	}
	r := resp.GetReplica()
	if r == nil {
		fmt.Fprintln(w, "replica:         none (serving from memory: no other replica writes)")
		return nil
	}
	state := "following"
	if !r.GetFollowing() {
		state = "NOT FOLLOWING since " + timeText(r.GetDisconnectedTime())
		if r.GetDatabaseUnreachable() {
			state += " (the database is unreachable)"
		}
	}
	fmt.Fprintf(w, "replica:         %s; lag %s, %d tenants behind, last in sync %s\n", state, r.GetLag().AsDuration(),
		r.GetTenantsBehind(), timeText(r.GetLastSyncTime()))
	fmt.Fprintf(w, "listener:        connected %s, %d reconnects, %d tenant states applied (%d as deltas)\n", timeText(r.GetConnectedTime()),
		r.GetReconnects(), r.GetApplied(), r.GetAppliedAsDeltas())
	return nil
}

// byteSize writes n bytes for people: B, KiB, MiB or GiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	return fmt.Sprintf("%.1f %s", f, suffix)
}
