-- Helpers shared by the ingest models (a script: run once per connection before the models).
create or replace temp macro html_unescape(s) as
    replace(replace(replace(replace(replace(replace(s,
        '&quot;', '"'), '&#39;', ''''), '&lt;', '<'), '&gt;', '>'), '&nbsp;', ' '), '&amp;', '&');

-- The reader hands each JSON value over as minified text (`j::varchar`); the checks below read
-- that text with string functions where they can, because every JSON function parses the value
-- again and the staging read is the ingest's hot loop. `json_type(j)` is only called to word
-- a reject's reason.

-- The text of a JSON string: its characters between the quotes, unless an escape needs decoding.
create or replace temp macro json_string(j) as
    case when contains(j::varchar, '\') then j ->> '$' else (j::varchar)[2:-2] end;

-- A JSON integer's text (minified: no '+', no leading zeros, no spaces); NULL for anything else.
create or replace temp macro json_integer_text(j) as
    case when regexp_full_match(j::varchar, '-?[0-9]+') then j::varchar end;

-- What a JSON value is, in the words of a reject reason ("asin is an array ...").
create or replace temp macro json_kind(t) as
    case t
        when 'VARCHAR' then 'a string'
        when 'BIGINT' then 'an integer'
        when 'UBIGINT' then 'an integer'
        when 'DOUBLE' then 'a number with a fraction or exponent'
        when 'BOOLEAN' then 'a boolean'
        when 'ARRAY' then 'an array'
        when 'OBJECT' then 'an object'
        else lower(t)
    end;

-- The JSON text of a value as a reason shows it: at most 40 characters.
create or replace temp macro json_shown(j) as
    case when length(j::varchar) > 40 then left(j::varchar, 40) || '...' else j::varchar end;

-- A value as a reason quotes it: its path in the record and json_shown, between unit separators
-- (chr(31), which no JSON text holds unescaped). The reader re-writes values (1e10 comes back as
-- 10000000000.0, "\u0041" as "A"), so micn.data.ingest.rejects replaces the mark by the value's
-- text in the line, and shows json_shown only when it cannot find it.
create or replace temp macro json_quoted(path, j) as
    chr(31) || path || chr(31) || json_shown(j) || chr(31);

-- An id (reviewerID, asin): a string (trimmed; empty is NULL) or an integer (its digits); else NULL.
create or replace temp macro json_id(j) as
    case when starts_with(j::varchar, '"') then nullif(trim(json_string(j)), '') else json_integer_text(j) end;

-- Why an id is not usable (NULL when it is): missing, null, empty, or of another JSON type.
create or replace temp macro json_id_problem(field, j) as
    case
        when j is null or json_type(j) in ('NULL', 'VARCHAR') then field || ' missing, null or empty'
        when json_type(j) not in ('BIGINT', 'UBIGINT')
            then field || ' is ' || json_kind(json_type(j)) || ' (' || json_quoted(field, j) || '); expected a string or an integer'
    end;
