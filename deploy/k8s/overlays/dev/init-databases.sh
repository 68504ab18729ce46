#!/bin/bash
# Runs once, when the Postgres volume is first created: one role and one database per
# service, each role able to reach only its own database (as deploy/postgres-init.sql
# does for compose), with the passwords from the services' bazaar-<service>-db-app
# Secrets, handed in as PASSWORD_<SERVICE>.
set -euo pipefail
for service in users inventory payments orders notifications; do
	password_var="PASSWORD_${service^^}"
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
		-v name="bazaar_$service" -v password="${!password_var}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE CONNECT ON DATABASE :"name" FROM PUBLIC;
SQL
done
