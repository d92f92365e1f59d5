-- analytics_session_durations: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_session_durations AS
 SELECT b.ord,
    b.bucket,
    b.upper_seconds,
    COALESCE(sum(d.sessions), 0::bigint)::integer AS sessions
   FROM ( VALUES (1,'<= 1 min'::text,60), (2,'1-5 min'::text,300), (3,'5-15 min'::text,900), (4,'15 min-1 h'::text,3600), (5,'1 h-1 d'::text,86400), (6,'> 1 d'::text,NULL::integer)) b(ord, bucket, upper_seconds)
     LEFT JOIN analytics_session_duration_day d ON d.ord = b.ord AND d.day >= (analytics_utc_today() - 29)
  GROUP BY b.ord, b.bucket, b.upper_seconds
  ORDER BY b.ord;
