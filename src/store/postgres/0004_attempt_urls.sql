-- Attempt rows name their destination URL by reference: a URL is stored once, not once per
-- attempt (a busy destination's URL would otherwise fill most of the attempts table).
CREATE TABLE attempt_urls (
    id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url TEXT NOT NULL UNIQUE
);
ALTER TABLE attempts ADD COLUMN url_id BIGINT REFERENCES attempt_urls(id);
INSERT INTO attempt_urls (url) SELECT DISTINCT url FROM attempts WHERE url IS NOT NULL;
UPDATE attempts a SET url_id = u.id, url = NULL FROM attempt_urls u WHERE u.url = a.url;
