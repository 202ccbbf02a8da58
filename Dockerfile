FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --system --home /app twokey && mkdir -p /app/var && chown twokey /app/var
USER twokey
# Keys are only needed at run time; collectstatic runs with throwaway ones.
RUN DEBUG=1 TWOKEY_DATA_DIR=/tmp/build TWOKEY_LOCAL_KEYS=1 python manage.py collectstatic --noinput
EXPOSE 8000
