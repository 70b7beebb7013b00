package httpfront

import (
	"errors"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"net/http"

	"github.com/hopper-dev/hopper/spool"
)

// jobAction serves POST /jobs/{id}/retry, /hold and /release: the CLI's
// verbs of the same names. It answers the job's record as it is after, or
// 409 when the job is not in a state the verb applies to.
func (s *Server) jobAction(verb string, do func(*spool.Spool, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, e := jobID(r)
		if e != nil {
			writeError(w, r, e)
			return
		}
		if err := do(s.sp, id); err != nil {
			if errors.Is(err, spool.ErrWrongState) {
				writeError(w, r, errorf(http.StatusConflict, "%v", err))
				return
			}
			writeError(w, r, s.storageError(verb+" the job", err))
			return
		}
		s.log.Info("job "+verb, "job", id, "remote", r.RemoteAddr)
		s.catalog.Refresh(id)
		if rec := s.readJob(w, r, id); rec != nil {
			writeRecord(w, http.StatusOK, rec)
		}
	}
}

// pauseState serves POST /pause and /resume: the runner claims nothing new
// while the spool is paused; running jobs finish. It answers
// {"paused": bool}.
func (s *Server) pauseState(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op, do := "resume", s.sp.Resume
		if pause {
			op, do = "pause", s.sp.Pause
		}
		if err := do(); err != nil {
			writeError(w, r, s.storageError(op, err))
			return
		}
		s.log.Info("spool "+op+"d", "remote", r.RemoteAddr)
		data, _ := jsonfmt.Marshal(map[string]bool{"paused": s.sp.Paused()})
		writeJSON(w, http.StatusOK, append(data, '\n'))
	}
}
