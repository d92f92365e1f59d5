-- analytics_sessions_by_status: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_sessions_by_status AS
 SELECT st.status,
    COALESCE(c.sessions, 0::bigint)::integer AS sessions
   FROM ( VALUES ('active_now'::text,1), ('recent'::text,2), ('inactive'::text,3)) st(status, ord)
     LEFT JOIN ( SELECT analytics_session_status(audit_session.last_active) AS status,
            count(*) AS sessions
           FROM audit_session
          WHERE audit_session.ended_at IS NULL
          GROUP BY (analytics_session_status(audit_session.last_active))) c ON c.status = st.status
  ORDER BY st.ord;
