# src/pynomaly/infrastructure/config/production.py
import os
from typing import Dict, Any

class ProductionConfig:
    # Database connection pool
    DATABASE_POOL_SIZE = 20
    DATABASE_MAX_OVERFLOW = 30
    DATABASE_POOL_TIMEOUT = 30
    DATABASE_POOL_RECYCLE = 3600
    
    # Redis connection pool
    REDIS_MAX_CONNECTIONS = 50
    REDIS_SOCKET_KEEPALIVE = True
    REDIS_SOCKET_KEEPALIVE_OPTIONS = {
        "TCP_KEEPINTVL": 1,
        "TCP_KEEPCNT": 3,
        "TCP_KEEPIDLE": 1
    }
    
    # Caching settings
    CACHE_DEFAULT_TIMEOUT = 300
    CACHE_REDIS_DB = 1
    
    # Rate limiting
    RATE_LIMIT_STORAGE_URL = os.getenv("REDIS_URL", "redis://localhost:6379/2")
    
    # Logging
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    
    # Security
    SECRET_KEY = os.getenv("SECRET_KEY")
    JWT_ALGORITHM = "HS256"
    JWT_ACCESS_TOKEN_EXPIRE_MINUTES = 30
    
    @classmethod
    def get_database_url(cls) -> str:
        return os.getenv("DATABASE_URL", "postgresql://localhost/pynomaly_prod")
    
    @classmethod
    def get_redis_url(cls) -> str:
        return os.getenv("REDIS_URL", "redis://localhost:6379/0")
