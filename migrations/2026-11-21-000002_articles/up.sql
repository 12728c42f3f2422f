CREATE TABLE articles (
  id BIGSERIAL PRIMARY KEY,
  title HSTORE,
  body TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX articles_title_en_key ON "articles" (("title" -> 'en'));
CREATE UNIQUE INDEX articles_title_en_ar_key ON "articles" (("title" -> 'en'), ("title" -> 'ar'));
