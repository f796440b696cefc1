-- Helpers shared by the ingest models.
create or replace temp macro html_unescape(s) as
    replace(replace(replace(replace(replace(replace(s,
        '&quot;', '"'), '&#39;', ''''), '&lt;', '<'), '&gt;', '>'), '&nbsp;', ' '), '&amp;', '&');
