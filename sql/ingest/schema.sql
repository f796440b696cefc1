-- The warehouse contract: what `micn samples` reads. Several datasets share one file, keyed by `dataset`.
create table if not exists reviews (
    dataset varchar not null,
    user_id varchar not null,
    item_id varchar not null,
    rating double,
    ts bigint not null  -- unixReviewTime, seconds since the epoch (UTC)
);

create table if not exists items (
    dataset varchar not null,
    item_id varchar not null,
    category varchar not null,  -- last element of the first category path, or 'default_cat'
    title varchar,
    brand varchar,
    price double,
    has_meta boolean not null  -- false: reviewed item with no metadata line (category 'default_cat')
);

create table if not exists rejects (
    dataset varchar not null,
    source_file varchar not null,
    line_no bigint,
    reason varchar not null,
    raw_line varchar
);

create table if not exists ingest_log (
    dataset varchar not null,
    source_file varchar not null,
    kind varchar not null,  -- reviews | meta
    format varchar not null,  -- reviews-2014 | reviews-2018 | meta-2014 | meta-2018
    lines_read bigint not null,  -- non-blank lines
    accepted bigint not null,
    rejected bigint not null,
    duplicates bigint not null,
    seconds double not null,
    ingested_at timestamp not null
);
